import math
import time

import pytest

from realface.cli import render_error
from realface.errors import ConfigError
from realface.invert import InvertConfig
from realface.options import MAX_SEEDS, parse_layers, parse_seeds
from realface.pipeline import parse_layers as pipeline_parse_layers
from realface.sampling import parse_seeds as sampling_parse_seeds


def test_seed_ranges_are_bounded_before_expansion():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    t0 = time.perf_counter()
    for spec in ("0-9999999999", f"0-{MAX_SEEDS}", "4294967296"):
        with pytest.raises(ConfigError) as e:
            sampling_parse_seeds(spec)
        assert len(str(e.value)) < 200 and "--seeds" in str(e.value)
    assert time.perf_counter() - t0 < 1.0
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    for spec in ("", "a", "5-2", "-1"):
        with pytest.raises(ConfigError):
            parse_seeds(spec)


def test_layer_ranges_are_bounded():
    assert pipeline_parse_layers("0-3") == (0, 1, 2, 3)
    assert pipeline_parse_layers("all") is None
    for spec in ("0-999999999", "0-99999", "0-99999999"):
        with pytest.raises(ConfigError) as e:
            pipeline_parse_layers(spec)
        assert len(str(e.value)) < 200 and "--transfer-layers" in str(e.value)
    assert parse_layers("0-31") == tuple(range(32))
    with pytest.raises(ConfigError):
        parse_layers("0-14", num_ws=14)
    assert parse_layers("0-13", num_ws=14) == tuple(range(14))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_float_config_fields_reject_non_finite(value):
    with pytest.raises(ConfigError) as e:
        InvertConfig(lr=value)
    assert e.value.field == "lr"


def test_train_and_loss_configs_reject_nan():
    from realface.losses import IdentityLossConfig
    from realface.train.loop import TrainConfig

    with pytest.raises(ConfigError):
        TrainConfig(data="d", real="r", lr=math.nan)
    with pytest.raises(ConfigError):
        TrainConfig(data="d", real="r", gamma=math.inf)
    with pytest.raises(ConfigError):
        IdentityLossConfig(sketch_weight=math.nan)


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError) as e:
        InvertConfig(coarse_to_fine=True, steps=6, fine_steps=50)
    message = render_error(e.value)
    assert "--fine-steps" in message and "fine_steps" not in message
