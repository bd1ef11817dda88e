"""StyleGAN2-ADA generator and discriminator in pure PyTorch.

Constructor arguments, call signatures, module names, and parameter/buffer names and shapes mirror
the official StyleGAN2-ADA networks (``training/networks.py`` at NVlabs/stylegan2-ada-pytorch
d72cc7d; reference/stylegan2-ada.md §A2-A3), so an official ``state_dict`` loads key for key and the
networks compute the same numbers (``tests/nn/test_stylegan2_official.py`` checks every array of the
official fixture to 1e-4).

Differences, all additive:
- ``float16`` blocks (``num_fp16_res``) only run in half precision on CUDA; on any other device they
  run in float32 (half precision convolutions are unusably slow on CPU).
- ``SynthesisNetwork.forward`` accepts ``noise=`` (explicit per-layer noise maps, e.g. optimised by
  the projector, one per layer in :meth:`SynthesisNetwork.noise_layers` order) and
  ``out_resolution=`` (stop at a lower-resolution block and return its skip image, used by
  coarse-to-fine inversion).
- ``impl`` selects the fast paths (fused conv epilogue, polyphase skip upsampling; ``"fast"``, the
  default) or the plain reference composition (``"ref"``); both are tested against each other.

Conventions: images are [N, C, H, W] float32, nominally in [-1, 1] (not clamped); W+ latents are
[N, num_ws, w_dim].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from realface.nn import ops

__all__ = [
    "FullyConnectedLayer",
    "Conv2dLayer",
    "MappingNetwork",
    "SynthesisLayer",
    "ToRGBLayer",
    "SynthesisBlock",
    "SynthesisNetwork",
    "Generator",
    "DiscriminatorBlock",
    "MinibatchStdLayer",
    "DiscriminatorEpilogue",
    "Discriminator",
    "config_f_kwargs",
]

NOISE_MODES = ("random", "const", "none")


def config_f_kwargs(resolution: int = 1024, num_fp16_res: int = 0, conv_clamp: float | None = 256) -> dict:
    """Constructor kwargs of the StyleGAN2 config-f generator (the FFHQ networks): z/w 512, 8 mapping
    layers, channel_base 32768, channel_max 512 (reference/stylegan2-ada.md §A2)."""
    return dict(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 8},
        synthesis_kwargs=dict(
            channel_base=32768, channel_max=512, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp
        ),
    )


def _block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    return torch.float16 if (use_fp16 and not force_fp32 and device.type == "cuda") else torch.float32


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: ``act(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul)``.

    ``weight`` is stored as N(0, 1) / lr_multiplier (the raw value the official checkpoints hold).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain  # [out, in]
        b: torch.Tensor | None = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())  # [N, out]
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
        )


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional 2x up/downsampling, bias, activation, clamp.

    With ``trainable=False`` (Freeze-D) weight and bias are buffers with the same names.
    """

    resample_filter: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ops.ACTIVATIONS[activation][1]
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(
            memory_format=memory_format
        )
        b = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            if b is not None:
                self.register_buffer("bias", b)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)


class MappingNetwork(nn.Module):
    """z [N, z_dim] (+ c [N, c_dim]) -> w broadcast to [N, num_ws, w_dim] (or [N, w_dim] if num_ws is None).

    Tracks ``w_avg`` (a buffer) in training mode; truncation lerps towards it:
    ``w = w_avg + psi * (w - w_avg)`` for the first ``truncation_cutoff`` ws (all when None).
    """

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
            x = ops.normalize_2nd_moment(z.to(torch.float32))  # [N, z_dim]
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))  # [N, embed]
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)  # [N, features]
        assert x is not None  # the layers above consumed z and/or c
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs w_avg, but this mapping network does not track it")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + noise + bias + lrelu + clamp."""

    resample_filter: torch.Tensor
    noise_const: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ops.ACTIVATIONS[activation][1]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1.0,
        noise: torch.Tensor | None = None,
        impl: str = "fast",
    ) -> torch.Tensor:
        """x: [N, in, R/up, R/up], w: [N, w_dim] -> [N, out, R, R]. ``noise`` ([N or 1, 1, R, R]) overrides noise_mode.

        ``impl="fast"`` fuses the epilogue (:func:`ops.scale_bias_act`); ``"ref"`` is the plain composition.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)  # [N, in]
        noise_in = None
        if self.use_noise:
            if noise is not None:
                noise_in = noise * self.noise_strength
            elif noise_mode == "random":
                noise_in = (
                    torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
                    * self.noise_strength
                )
            elif noise_mode == "const":
                noise_in = self.noise_const * self.noise_strength
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        conv_kw: dict[str, Any] = dict(
            up=self.up, padding=self.padding, resample_filter=self.resample_filter, flip_weight=(self.up == 1)
        )
        if impl == "ref" or self.activation not in ("lrelu", "relu", "linear"):
            x = ops.modulated_conv2d(
                x, self.weight, styles, noise=noise_in, fused_modconv=fused_modconv, **conv_kw
            )
            return ops.bias_act(
                x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp, impl="ref"
            )
        # Fast path: demodulation, noise, bias, activation gain and clamp in one fused epilogue.
        if fused_modconv:
            x = ops.modulated_conv2d(x, self.weight, styles, fused_modconv=True, **conv_kw)
            d = torch.full(x.shape[:2], act_gain, dtype=x.dtype, device=x.device)
        else:
            x, dcoefs = ops.modulated_conv2d(
                x, self.weight, styles, fused_modconv=False, defer_demod=True, **conv_kw
            )
            assert dcoefs is not None  # demodulation is on in this layer
            d = dcoefs.to(x.dtype) * act_gain
        n = noise_in.to(x.dtype) * act_gain if noise_in is not None else None
        b = self.bias.to(x.dtype) * act_gain
        return ops.scale_bias_act(x, d, n, b, act=self.activation, clamp=act_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation: features -> image channels (linear, clamped)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, in]
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: [const |] conv0(up) -> conv1 -> torgb, img += up(img)."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs: Any,
    ) -> None:
        super().__init__()
        if architecture != "skip":
            raise NotImplementedError(
                f"only the 'skip' generator architecture is supported, got {architecture!r}"
            )
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                channels_last=self.channels_last,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(
            out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
        )
        self.num_torgb += 1

    def conv_layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise: Sequence[torch.Tensor | None] | None = None,
        impl: str = "fast",
        **layer_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws: [N, num_conv + num_torgb, w_dim]; x: [N, Cin, R/2, R/2]; img: [N, C, R/2, R/2] -> (x, img) at R."""
        if ws.ndim != 3 or ws.shape[1] != self.num_conv + self.num_torgb or ws.shape[2] != self.w_dim:
            raise ValueError(
                f"block b{self.resolution} expects ws [N, {self.num_conv + self.num_torgb}, {self.w_dim}], "
                f"got {tuple(ws.shape)}"
            )
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device)
        memory_format = (
            torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        )
        if fused_modconv is None:
            # Official rule (fused for inference), except when gradients w.r.t. the latents are being
            # taken in eval mode (inversion): the non-fused form then skips weight gradients of every
            # convolution and is about twice as fast on CPU. Both forms are mathematically equal.
            fused_modconv = (
                (not self.training)
                and (dtype == torch.float32 or int(ws.shape[0]) == 1)
                and not (torch.is_grad_enabled() and ws.requires_grad)
            )
        noise = list(noise) if noise is not None else [None] * self.num_conv
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])  # [N, C, 4, 4]
            x = self.conv1(
                x, next(w_iter), fused_modconv=fused_modconv, noise=noise[0], impl=impl, **layer_kwargs
            )
        else:
            assert x is not None, "a block after the first needs the features of the one before"
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(
                x, next(w_iter), fused_modconv=fused_modconv, noise=noise[0], impl=impl, **layer_kwargs
            )
            x = self.conv1(
                x, next(w_iter), fused_modconv=fused_modconv, noise=noise[1], impl=impl, **layer_kwargs
            )
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter, impl=impl)  # [N, C, R, R]
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] -> image [N, img_channels, R, R] ('skip' architecture)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=(res == img_resolution),
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """Every noise-carrying conv layer, in the order that ``forward(noise=...)`` expects."""
        return [layer for block in self.blocks() for layer in block.conv_layers()]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        noise: Sequence[torch.Tensor | None] | None = None,
        out_resolution: int | None = None,
        impl: str = "fast",
    ) -> torch.Tensor:
        """ws: [N, num_ws, w_dim] -> img [N, C, R, R] with R = out_resolution or img_resolution.

        noise: optional list with one map per layer of :meth:`noise_layers` ([N or 1, 1, R_l, R_l], or
        None to use ``noise_mode`` for that layer). out_resolution: stop after that block and return
        its skip-path image (the image the full network would upsample from there).
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        if out_resolution is not None and out_resolution not in self.block_resolutions:
            raise ValueError(f"out_resolution must be one of {self.block_resolutions}, got {out_resolution}")
        n_noise = len(self.noise_layers())
        if noise is not None and len(noise) != n_noise:
            raise ValueError(f"noise must hold {n_noise} maps (one per conv layer), got {len(noise)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        n_idx = 0
        for block in self.blocks():
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)  # [N, k, w_dim]
            cur_noise = None if noise is None else noise[n_idx : n_idx + block.num_conv]
            x, img = block(
                x,
                img,
                cur_ws,
                force_fp32=force_fp32,
                fused_modconv=fused_modconv,
                noise=cur_noise,
                impl=impl,
                noise_mode=noise_mode,
            )
            w_idx += block.num_conv
            n_idx += block.num_conv
            if out_resolution is not None and block.resolution == out_resolution:
                break
        assert img is not None, "the synthesis network has at least one block"
        return img


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``G(z, c) = synthesis(mapping(z, c))``.

    z: [N, z_dim]; c: [N, c_dim] or None when c_dim == 0. Output: [N, img_channels, R, R] float32,
    nominally in [-1, 1]. The constructor takes the official ``_init_kwargs``.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        synthesis_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.init_kwargs = dict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=dict(mapping_kwargs or {}),
            synthesis_kwargs=dict(synthesis_kwargs or {}),
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **(synthesis_kwargs or {})
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


class DiscriminatorBlock(nn.Module):
    """One resolution of the 'resnet' discriminator: [fromrgb] -> conv0 -> conv1(down) (+ skip(down)) * sqrt(.5)."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        if architecture != "resnet":
            raise NotImplementedError(f"only the 'resnet' discriminator is supported, got {architecture!r}")
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"in_channels must be 0 or {tmp_channels}, got {in_channels}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.num_layers = 0

        def trainable() -> bool:
            idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common: dict[str, Any] = dict(
            activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last
        )
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=3,
            down=2,
            trainable=trainable(),
            resample_filter=resample_filter,
            **common,
        )
        self.skip = Conv2dLayer(
            tmp_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            down=2,
            trainable=trainable(),
            resample_filter=resample_filter,
            channels_last=self.channels_last,
        )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        first = x if x is not None else img
        assert first is not None, "a discriminator block needs features or an image"
        dtype = _block_dtype(self.use_fp16, force_fp32, first.device)
        memory_format = (
            torch.channels_last if self.channels_last and not force_fp32 else torch.contiguous_format
        )
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0:
            assert img is not None, "the first discriminator block reads the image"
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = None
        y = self.skip(x, gain=math.sqrt(0.5))  # [N, out, R/2, R/2]
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x, img


class MinibatchStdLayer(nn.Module):
    """Append the standard deviation over groups of ``group_size`` samples as ``num_channels`` feature maps.

    Sample i belongs to group ``i mod (N / G)``; N must be divisible by G = min(group_size, N).
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        G = min(self.group_size, N) if self.group_size is not None else N
        if N % G:
            raise ValueError(f"minibatch-std: batch size {N} is not divisible by group size {G}")
        F_ = self.num_channels
        c = C // F_
        y = x.reshape(G, -1, F_, c, H, W)  # [GnFcHW]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)  # [nFcHW]
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # [nF]
        y = y.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)  # [NFHW]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head (always float32): minibatch-std -> conv 3x3 -> fc -> out (-> projection with cmap)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)  # [N, 1] or [N, cmap_dim]
        if self.cmap_dim > 0:
            assert cmap is not None, "a conditional discriminator needs the mapped condition"
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2-ADA 'resnet' discriminator: image [N, C, R, R] (+ c) -> logits [N, 1]."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict[str, Any] | None = None,
        mapping_kwargs: dict[str, Any] | None = None,
        epilogue_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.init_kwargs = dict(
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            architecture=architecture,
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
            cmap_dim=cmap_dim,
            block_kwargs=dict(block_kwargs or {}),
            mapping_kwargs=dict(mapping_kwargs or {}),
            epilogue_kwargs=dict(epilogue_kwargs or {}),
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common: dict[str, Any] = dict(
            img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp
        )
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_resolution),
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def forward(
        self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False
    ) -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"D expects images [N, {', '.join(map(str, expected))}], got {tuple(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
