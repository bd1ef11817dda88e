"""Test helpers: tiny networks of the real architectures, and a writer for the official pickle layout.

``write_official_pickle`` produces files laid out exactly like a StyleGAN2-ADA training snapshot (a
dict of ``torch_utils.persistence`` records whose state is each module's ``__dict__``), so the safe
loader can be tested on any configuration, not only the one shipped fixture. The fake
``torch_utils``/``dnnlib`` modules exist only while writing.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from realface.nn.stylegan2 import Discriminator, Generator


def tiny_generator_kwargs(resolution: int = 32, w_dim: int = 32, c_dim: int = 0, **synthesis: Any) -> dict:
    syn = dict(channel_base=resolution * 32, channel_max=32, num_fp16_res=0, conv_clamp=256)
    syn.update(synthesis)
    return dict(
        z_dim=w_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=syn,
    )


def tiny_generator(resolution: int = 32, seed: int = 0, **kw: Any) -> Generator:
    torch.manual_seed(seed)
    G = Generator(**tiny_generator_kwargs(resolution, **kw))
    with torch.no_grad():  # make every tensor matter (noise strengths and biases start at 0)
        for name, p in G.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
        G.mapping.w_avg.normal_()
    return G.eval()


def tiny_discriminator(resolution: int = 32, seed: int = 0, c_dim: int = 0, **kw: Any) -> Discriminator:
    torch.manual_seed(seed)
    args = dict(
        c_dim=c_dim,
        img_resolution=resolution,
        img_channels=3,
        channel_base=resolution * 32,
        channel_max=32,
        conv_clamp=256,
        epilogue_kwargs=dict(mbstd_group_size=2),
    )
    args.update(kw)
    return Discriminator(**args).eval()


def _persistence_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    tu = types.ModuleType("torch_utils")
    per = types.ModuleType("torch_utils.persistence")
    dn = types.ModuleType("dnnlib")
    dnu = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by realface
        raise RuntimeError("not for loading")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    per._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    dnu.EasyDict = EasyDict
    tu.persistence = per
    dn.util = dnu
    return tu, per, dn, dnu


@contextlib.contextmanager
def _fake_official_modules():
    tu, per, dn, dnu = _persistence_modules()
    saved = {
        k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    }
    sys.modules.update({"torch_utils": tu, "torch_utils.persistence": per, "dnnlib": dn, "dnnlib.util": dnu})
    try:
        yield per._reconstruct_persistent_obj, dnu.EasyDict
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Persistent:
    """Pickles like a persistent_class instance: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, module: torch.nn.Module, reconstruct, easydict, init_kwargs: dict | None):
        self.module, self.reconstruct, self.easydict, self.init_kwargs = (
            module,
            reconstruct,
            easydict,
            init_kwargs,
        )

    def __reduce__(self):
        m = self.module
        state: dict[str, Any] = {
            "training": False,
            "_parameters": OrderedDict((k, v) for k, v in m._parameters.items()),
            "_buffers": OrderedDict((k, v) for k, v in m._buffers.items()),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": OrderedDict(),
            "_forward_hooks": OrderedDict(),
            "_modules": OrderedDict(
                (k, _Persistent(c, self.reconstruct, self.easydict, None)) for k, c in m._modules.items()
            ),
            "weight_gain": np.float64(getattr(m, "weight_gain", 1.0)),
            "_init_args": (),
            "_init_kwargs": self.easydict(self._easy(self.init_kwargs or {})),
        }
        meta = dict(
            type="class", version=6, module_src="# source omitted", class_name=type(m).__name__, state=state
        )
        return self.reconstruct, (meta,)

    def _easy(self, d: dict) -> dict:
        return {k: self.easydict(self._easy(v)) if isinstance(v, dict) else v for k, v in d.items()}


def write_official_pickle(path: Path, protocol: int = 4, **networks: torch.nn.Module) -> Path:
    """Write networks (G=, D=, G_ema=) in the layout of an official StyleGAN2-ADA snapshot."""
    with _fake_official_modules() as (reconstruct, easydict):
        data = {"training_set_kwargs": None}
        for name, net in networks.items():
            data[name] = _Persistent(net, reconstruct, easydict, getattr(net, "init_kwargs", {}))
        data["augment_pipe"] = None
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    return Path(path)


def random_vgg16_file(path: Path, seed: int = 0) -> Path:
    """A torchvision-layout VGG16 ``features.*`` state dict with random weights (stands in for
    vgg16-397923af.pth, which cannot be downloaded in tests). Scaled so activations stay O(1)."""
    import torchvision

    torch.manual_seed(seed)
    features = torchvision.models.vgg16(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    torch.save(state, path)
    return Path(path)
