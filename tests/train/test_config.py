"""`TrainConfig` as saved in a run folder: the identity settings nested, and runs saved with the old
flat keys still load."""

from __future__ import annotations

import dataclasses
import json

import pytest

from realface.errors import ConfigError
from realface.losses import IdentityLossConfig
from realface.train.loop import TrainConfig

# training_options.json as runs wrote it while λs / λc were flat fields of the training options.
OLD_OPTIONS = """{
  "D_reg_interval": 16, "G_reg_interval": 4, "ada": true, "ada_interval": 4, "ada_kimg": 100.0,
  "ada_target": 0.6, "allow_random_d": false, "augment_p": 0.0, "batch": 8, "color_weight": 1000.0,
  "d_lr": null, "data": "faces", "ema_kimg": 10.0, "g_lr": null, "gamma": 10.0, "grid_size": 8,
  "keep": 3, "kimg": 40.0, "kimg_per_tick": 4.0, "lpips_vgg": null, "lr": 0.002, "out": "runs/old",
  "pl_weight": 2.0, "precision": "fp32", "real": "real.pkl", "seed": 0, "sketch_extractor": "xdog",
  "sketch_reduction": "mean", "sketch_weight": 2e-05, "snap": 5, "style_mixing": 0.9, "workers": 0,
  "xflip": true
}"""


def test_old_flat_identity_keys_load_into_the_nested_config():
    cfg = TrainConfig.from_dict(json.loads(OLD_OPTIONS))
    assert cfg.identity == IdentityLossConfig(
        sketch_weight=2e-5, color_weight=1000.0, sketch_reduction="mean"
    )
    assert (cfg.batch, cfg.out, cfg.data, cfg.workers) == (8, "runs/old", "faces", 0)


def test_saved_config_round_trips():
    cfg = TrainConfig(
        data="d", real="r", workers=0, identity=IdentityLossConfig(color_weight=5.0, scale_to_resolution=True)
    )
    saved = json.loads(json.dumps(cfg.to_dict()))
    assert saved["identity"]["color_weight"] == 5.0 and "sketch_weight" not in saved
    assert TrainConfig.from_dict(saved) == cfg


def test_bad_saved_configs_are_refused_with_the_field():
    old = json.loads(OLD_OPTIONS)
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({**old, "sketch_weight": -1.0})
    assert e.value.field == "sketch_weight"
    with pytest.raises(ConfigError, match="'lambda_c'") as e:
        TrainConfig.from_dict({**old, "lambda_c": 1.0})
    assert e.value.field == "lambda_c"
    with pytest.raises(ConfigError) as e:
        TrainConfig(data="d", real="r", workers=0, identity={"sketch_weight": 1.0})  # type: ignore[arg-type]
    assert e.value.field == "identity"


def test_identity_defaults_are_the_papers():
    cfg = TrainConfig(data="d", real="r", workers=0)
    assert cfg.identity == IdentityLossConfig()
    assert (cfg.identity.sketch_weight, cfg.identity.color_weight) == (5e-6, 3.75e3)
    assert not cfg.identity.scale_to_resolution
    assert dataclasses.replace(cfg, identity=IdentityLossConfig(color_weight=0.0)).identity.color_weight == 0
