"""A procedural face world with known truth: one parameter vector, drawn as a photo or as a CG render.

Every face is a vector ``p`` of :data:`NUM_PARAMS` numbers in [0, 1] (:data:`PARAM_NAMES`): head shape,
skin tone, hair shape and colour, eye, brow, nose and mouth geometry and colour (the *identity*,
:data:`IDENTITY_PARAMS`), then pose (yaw, pitch), lighting direction and background. Two renderers
draw the same ``p``:

- :func:`render_photo`: the "photo" look — soft Lambert shading of an ellipsoidal head under the
  light direction, a soft specular highlight, fixed skin and hair texture fields, subsurface blush,
  a blurred gradient background.
- :func:`render_cg`: the CG look of avatar renders — brighter, more saturated "plastic" skin with toon
  shading (three flat bands), a hard large specular, no texture, stylised eyes (larger, dark outline,
  bright catch-light), outlined head, flat background. It is a different drawing of the same
  geometry, not a pixel filter of the photo.

Both are deterministic functions of ``p`` (the texture fields are fixed by a seed), so for every CG
render the photo of the same person exists. Coordinates: pixel centres on a [-1, 1]² grid, ``x`` to
the right, ``y`` down; the face is centred as in FFHQ crops (eyes at about 45 % of the height).
Images are ``[N, 3, R, R]`` float32 in [-1, 1], like the generators' output; rendering is
supersampled 2×2 and area-averaged.

:func:`params_from_z` turns a StyleGAN latent ``z`` into ``p`` the way the generator sees it (after
the mapping network's 2nd-moment normalisation), so ``G(z)`` can be trained to regress
``render_photo(params_from_z(z))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "PARAM_NAMES",
    "NUM_PARAMS",
    "IDENTITY_PARAMS",
    "params_from_z",
    "sample_params",
    "render_photo",
    "render_cg",
    "render",
    "STYLES",
]

PARAM_NAMES: tuple[str, ...] = (
    "face_width",
    "face_length",
    "chin",
    "skin_light",
    "skin_warm",
    "hairline",
    "hair_volume",
    "hair_light",
    "hair_red",
    "eye_spacing",
    "eye_size",
    "eye_height",
    "iris_hue",
    "brow_thick",
    "brow_height",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_thick",
    "lip_red",
    "yaw",
    "pitch",
    "light_azimuth",
    "light_elevation",
    "bg_hue",
    "bg_light",
)
NUM_PARAMS = len(PARAM_NAMES)
#: Indices of the parameters that define the person (not pose, light or background).
IDENTITY_PARAMS: tuple[int, ...] = tuple(range(PARAM_NAMES.index("yaw")))

_IDX = {name: i for i, name in enumerate(PARAM_NAMES)}


def params_from_z(z: torch.Tensor) -> torch.Tensor:
    """``z`` [N, Z] (Z ≥ NUM_PARAMS) -> ``p`` [N, NUM_PARAMS] in (0, 1).

    ``z`` is normalised as the mapping network does (``z · rsqrt(mean(z²))``), and the first
    :data:`NUM_PARAMS` components go through the standard normal CDF. The generator therefore sees
    exactly the information that defines ``p``.
    """
    if z.ndim != 2 or z.shape[1] < NUM_PARAMS:
        raise ValueError(f"z must be [N, >= {NUM_PARAMS}], got {tuple(z.shape)}")
    z = z.float()
    zn = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # [N, Z]
    return 0.5 * (1 + torch.erf(zn[:, :NUM_PARAMS] / math.sqrt(2)))  # [N, P]


def sample_params(n: int, seed: int) -> torch.Tensor:
    """``n`` parameter vectors [n, NUM_PARAMS] drawn uniformly (seeded, independent of the device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand([n, NUM_PARAMS], generator=g)


def _lerp(a: float, b: float, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def _texture(res: int, seed: int, scale: int) -> torch.Tensor:
    """A fixed smooth noise field [1, 1, res, res] with unit standard deviation."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn([1, 1, max(res // scale, 2), max(res // scale, 2)], generator=g)
    field = F.interpolate(base, size=(res, res), mode="bicubic", align_corners=False)
    return (field - field.mean()) / (field.std() + 1e-8)


def _soft(sdf: torch.Tensor, width: float) -> torch.Tensor:
    """Coverage of a shape from its signed distance (negative inside), edge softness ``width``."""
    return torch.sigmoid(-sdf / width)


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (in units of its smaller radius)."""
    d = torch.sqrt(((x - cx) / rx).square() + ((y - cy) / ry).square() + 1e-12)
    return (d - 1) * torch.minimum(rx, ry)


def _hsv_like(hue: torch.Tensor, sat: float, val: torch.Tensor) -> torch.Tensor:
    """A colour [N, 3] from a hue in [0, 1], a fixed saturation and a value [N]."""
    k = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0], device=hue.device)
    c = 0.5 + 0.5 * torch.cos(2 * math.pi * (hue[:, None] + k))  # [N, 3] in [0, 1]
    return val[:, None] * (1 - sat + sat * c)


def _geometry(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor, stylised: bool) -> dict:
    """Shapes of every part on the grid ``x, y`` [1, H, W] for parameters ``p`` [N, P].

    Returns signed distances [N, H, W] and the head's normal field; both renderers colour these.
    """
    P = {k: p[:, i, None, None] for k, i in _IDX.items()}  # each [N, 1, 1]
    yaw = _lerp(-0.45, 0.45, P["yaw"])  # radians, about ±26°
    pitch = _lerp(-0.25, 0.25, P["pitch"])
    a = _lerp(0.50, 0.66, P["face_width"])  # head half-width
    b = _lerp(0.62, 0.78, P["face_length"])  # head half-height
    cx = 0.0 * a
    cy = 0.02 + 0.0 * b
    # Projected head outline: an ellipsoid (a, b, c=a) seen under yaw/pitch keeps its half-axes.
    dx, dy = x - cx, y - cy
    chin = _lerp(0.0, 0.35, P["chin"])
    # Narrow the lower half towards the chin.
    taper = 1 - chin * torch.clamp(dy / b, min=0).square()
    head = _ellipse(dx / taper.clamp(min=0.3), dy, 0.0, 0.0, a, b)
    # Face-local coordinates of a feature at local (u, v) with depth on the ellipsoid.
    sy, cyw = torch.sin(yaw), torch.cos(yaw)
    sp, cp = torch.sin(pitch), torch.cos(pitch)

    def place(u, v):
        depth = torch.sqrt(torch.clamp(1 - (u / a).square() - (v / b).square(), min=0.05)) * a
        return cx + u * cyw + depth * sy, cy + v * cp + depth * sp

    eye_scale = 1.35 if stylised else 1.0
    ex = _lerp(0.20, 0.30, P["eye_spacing"])
    ev = _lerp(-0.16, -0.04, P["eye_height"])
    er = _lerp(0.075, 0.11, P["eye_size"]) * eye_scale
    shapes = {}
    for side, sgn in (("l", -1.0), ("r", 1.0)):
        px, py = place(sgn * ex, ev)
        fx = cyw * (1 - 0.5 * (sgn * sy).clamp(min=0))  # the far eye is foreshortened more
        shapes[f"eye_{side}"] = _ellipse(x, y, px, py, er * fx, er * 0.55)
        shapes[f"iris_{side}"] = _ellipse(x, y, px + 0.02 * sy, py, er * 0.5 * fx, er * 0.5)
        shapes[f"pupil_{side}"] = _ellipse(x, y, px + 0.02 * sy, py, er * 0.22 * fx, er * 0.22)
        shapes[f"glint_{side}"] = _ellipse(
            x, y, px + 0.02 * sy - er * 0.15, py - er * 0.15, er * 0.09, er * 0.09
        )
        bh = ev - _lerp(0.08, 0.15, P["brow_height"])
        bx, by = place(sgn * ex, bh)
        arch = (x - bx) / (er * 1.4 * fx)
        shapes[f"brow_{side}"] = _ellipse(
            x,
            y + 0.03 * (1 - arch.square()).clamp(min=0),
            bx,
            by,
            er * 1.4 * fx,
            _lerp(0.012, 0.035, P["brow_thick"]),
        )
    nl = _lerp(0.14, 0.24, P["nose_length"])
    nw = _lerp(0.05, 0.09, P["nose_width"])
    nx, ny = place(0.0 * a, ev + nl)
    shapes["nose_tip"] = _ellipse(x, y, nx + 0.05 * sy, ny, nw, nw * 0.6)
    shapes["nostril_l"] = _ellipse(
        x, y, nx - nw * 0.55 * cyw + 0.04 * sy, ny + nw * 0.35, nw * 0.28, nw * 0.16
    )
    shapes["nostril_r"] = _ellipse(
        x, y, nx + nw * 0.55 * cyw + 0.04 * sy, ny + nw * 0.35, nw * 0.28, nw * 0.16
    )
    ridge_x = nx + 0.04 * sy
    shapes["nose_ridge"] = torch.maximum(
        (x - ridge_x).abs() - nw * 0.25, torch.maximum(ev + 0.03 - y, y - ny)
    )
    mw = _lerp(0.12, 0.20, P["mouth_width"])
    lt = _lerp(0.02, 0.045, P["lip_thick"])
    mx, my = place(0.0 * a, ev + nl + _lerp(0.11, 0.14, P["nose_length"]))
    shapes["lips"] = _ellipse(x, y, mx, my, mw * cyw, lt * 1.6)
    shapes["mouth_line"] = torch.maximum((y - my).abs() - 0.006, (x - mx).abs() - mw * cyw * 0.9)
    # Hair: a cap above the hairline, wider than the head by the volume.
    vol = _lerp(0.03, 0.16, P["hair_volume"])
    hairline = cy - b * _lerp(0.35, 0.75, P["hairline"])
    cap = _ellipse(x, y, cx - 0.05 * sy, cy - 0.05, a + vol, b + vol * 0.8)
    hair = torch.maximum(cap, y - (hairline + 0.25 * (dx / a).square() * b))
    sides = torch.maximum(cap, y - (cy + b * _lerp(-0.1, 0.45, P["hair_volume"])))
    sides = torch.maximum(sides, -(head - 0.0))  # only outside the face
    shapes["hair"] = torch.minimum(hair, sides)
    shapes["head"] = head
    shapes["neck"] = torch.maximum((x - cx).abs() - a * 0.55, cy + b * 0.5 - y)
    shapes["shoulders"] = _ellipse(x, y, cx, torch.full_like(cy, 1.55), 1.1 + 0 * a, 0.55 + 0 * b)
    # Normals of the head ellipsoid turned by the pose (for shading).
    u = (dx / taper.clamp(min=0.3) / a).clamp(-1, 1)
    v = (dy / b).clamp(-1, 1)
    nz = torch.sqrt(torch.clamp(1 - u.square() - v.square(), min=0.0))
    shapes["normal"] = (u, v, nz)
    shapes["yaw"], shapes["pitch"] = yaw, pitch
    return shapes


def _draw(p: torch.Tensor, res: int, stylised: bool) -> torch.Tensor:
    if p.ndim != 2 or p.shape[1] != NUM_PARAMS:
        raise ValueError(f"p must be [N, {NUM_PARAMS}], got {tuple(p.shape)}")
    p = p.float().clamp(0, 1)
    N, dev = p.shape[0], p.device
    ss = res * 2
    t = ((torch.arange(ss, device=dev, dtype=torch.float32) + 0.5) / ss * 2 - 1) * 0.84 + 0.04
    y, x = torch.meshgrid(t, t, indexing="ij")
    x, y = x[None], y[None]  # [1, S, S]
    edge = 1.5 / ss
    g = _geometry(p, x, y, stylised)
    P = {k: p[:, i] for k, i in _IDX.items()}  # each [N]

    def cov(name, w=edge):
        return _soft(g[name], w)[:, None]  # [N, 1, S, S]

    # Colours [N, 3, 1, 1].
    def col(c):
        return c[:, :, None, None]

    skin_v = _lerp(0.35, 0.92, P["skin_light"])
    skin = torch.stack(
        [skin_v, skin_v * _lerp(0.70, 0.82, P["skin_warm"]), skin_v * _lerp(0.50, 0.72, 1 - P["skin_warm"])],
        1,
    )
    hair_v = _lerp(0.08, 0.75, P["hair_light"])
    hair_c = torch.stack(
        [hair_v * _lerp(0.9, 1.25, P["hair_red"]), hair_v * 0.78, hair_v * _lerp(0.55, 0.35, P["hair_red"])],
        1,
    )
    iris_c = _hsv_like(_lerp(0.05, 0.65, P["iris_hue"]), 0.7, torch.full_like(P["iris_hue"], 0.55))
    lip_c = (
        torch.stack(
            [
                _lerp(0.55, 0.85, P["lip_red"]),
                _lerp(0.35, 0.25, P["lip_red"]),
                _lerp(0.35, 0.30, P["lip_red"]),
            ],
            1,
        )
        * skin_v[:, None] ** 0.3
    )
    bg_c = _hsv_like(P["bg_hue"], 0.35, _lerp(0.25, 0.9, P["bg_light"]))
    cloth_c = _hsv_like(P["bg_hue"] + 0.5, 0.5, _lerp(0.6, 0.3, P["bg_light"]))
    if stylised:  # plastic CG palette: brighter, more saturated skin and lips
        skin = (skin * 1.12 + 0.05).clamp(0, 1)
        skin = skin.mean(1, keepdim=True) + (skin - skin.mean(1, keepdim=True)) * 1.4
        lip_c = lip_c.mean(1, keepdim=True) + (lip_c - lip_c.mean(1, keepdim=True)) * 1.5
        iris_c = iris_c * 1.25
    # Lighting.
    az = _lerp(-1.0, 1.0, P["light_azimuth"])
    el = _lerp(-0.1, 0.6, P["light_elevation"])
    L = torch.stack(
        [torch.sin(az) * torch.cos(el), -torch.sin(el), torch.cos(az) * torch.cos(el)], 1
    )  # [N,3]
    u, v, nz = g["normal"]
    ndl = (u * L[:, 0, None, None] + v * L[:, 1, None, None] + nz * L[:, 2, None, None]).clamp(
        min=0
    )  # [N,S,S]
    half = F.normalize(L + torch.tensor([0.0, 0.0, 1.0], device=dev), dim=1)
    ndh = (u * half[:, 0, None, None] + v * half[:, 1, None, None] + nz * half[:, 2, None, None]).clamp(min=0)
    if stylised:
        shade = 0.55 + 0.45 * (torch.floor(ndl * 3 + 0.5) / 3)  # toon bands
        spec = 0.35 * (ndh > 0.96).float()
    else:
        shade = 0.38 + 0.62 * ndl
        spec = 0.12 * ndh.pow(24)
    shade, spec = shade[:, None], spec[:, None]  # [N, 1, S, S]

    # Background and clothes.
    if stylised:
        img = col(bg_c).expand(N, 3, ss, ss).clone()
    else:
        grad = (0.85 + 0.3 * (y + 1) / 2 * -1 + 0.15)[:, None]  # darker towards the bottom
        img = col(bg_c) * grad + 0.04 * _texture(ss, 11, 16).to(dev)
    shoulders = cov("shoulders", edge * 2)
    cloth = col(cloth_c) * (1.0 if stylised else (0.8 + 0.1 * _texture(ss, 12, 8).to(dev)))
    img = img * (1 - shoulders) + cloth * shoulders
    neck = cov("neck") * (1 - shoulders)
    img = img * (1 - neck) + col(skin) * 0.72 * neck
    # Hair behind and around the head.
    hair_m = cov("hair", edge * (1 if stylised else 2))
    if stylised:
        hair_img = col(hair_c) * (0.8 + 0.3 * (torch.floor(ndl * 2 + 0.5) / 2))[:, None]
    else:
        strands = 1 + 0.12 * torch.sin(x * 90 + 6 * _texture(ss, 13, 16).to(dev)[0])[None]
        hair_img = col(hair_c) * (0.65 + 0.5 * ndl[:, None]) * strands + 0.05 * spec
    # Face.
    head_m = cov("head", edge * (1 if stylised else 1.5))
    if stylised:
        face = col(skin) * shade + spec
    else:
        tex = 1 + 0.035 * _texture(ss, 7, 4).to(dev) + 0.02 * _texture(ss, 8, 32).to(dev)
        blush = 0.06 * torch.exp(-((x.abs() - 0.28).square() + (y - 0.12).square()) / 0.01)[:, None]
        face = (
            col(skin) * shade * tex
            + spec
            + blush * torch.tensor([1.0, -0.3, -0.3], device=dev)[None, :, None, None]
        )
    img = img * (1 - head_m) + face * head_m
    if stylised:  # dark outline of the head
        outline = (_soft(g["head"].abs() - 1.2 * edge, edge))[:, None] * 0.7
        img = img * (1 - outline)
    # Nose: shading on the side away from the light, nostrils.
    side = torch.sign(-L[:, 0])[:, None, None]
    ridge = _soft(g["nose_ridge"], edge * 3)[:, None]
    if stylised:
        tip_line = _soft(g["nose_tip"].abs() - edge, edge)[:, None] * (x > 0).float()[:, None] * 0.25
        img = img * (1 - tip_line * head_m)
    else:
        shadow = 0.18 * ridge * torch.sigmoid(side[:, None] * 40 * (x[:, None] - 0.0))
        img = img * (1 - shadow * head_m)
        img = img * (1 - 0.15 * cov("nose_tip", edge * 4) * (1 - ndl[:, None]))
    nostrils = torch.maximum(cov("nostril_l"), cov("nostril_r"))
    img = img * (1 - (0.5 if not stylised else 0.35) * nostrils * head_m)
    # Lips and mouth line.
    lips = cov("lips", edge * (1 if stylised else 1.6)) * head_m
    lip_img = col(lip_c) * (shade if stylised else (0.7 + 0.4 * ndl[:, None]))
    img = img * (1 - lips) + lip_img * lips
    img = img * (1 - 0.6 * cov("mouth_line") * head_m)
    # Eyes.
    for s in ("l", "r"):
        eye = cov(f"eye_{s}") * head_m
        white = 0.93 if stylised else 0.82
        img = img * (1 - eye) + white * eye * (1.0 if stylised else shade.clamp(min=0.8))
        iris = cov(f"iris_{s}") * eye
        img = img * (1 - iris) + col(iris_c) * iris
        pupil = cov(f"pupil_{s}") * eye
        img = img * (1 - pupil) + 0.05 * pupil
        if stylised:
            ring = _soft(g[f"eye_{s}"].abs() - 1.5 * edge, edge)[:, None] * head_m
            img = img * (1 - 0.85 * ring)
            glint = cov(f"glint_{s}") * eye
            img = img * (1 - glint) + glint
        else:
            lid = (
                _soft((g[f"eye_{s}"] + 0.01).abs() - edge, edge)[:, None] * head_m * (y < 0).float()[:, None]
            )
            img = img * (1 - 0.35 * lid)
        brow = cov(f"brow_{s}", edge * (1 if stylised else 2)) * head_m
        img = img * (1 - brow) + col(hair_c * 0.8) * brow
    # Hair over the forehead.
    img = img * (1 - hair_m) + hair_img * hair_m
    img = F.avg_pool2d(img.clamp(0, 1), 2)  # [N, 3, res, res]
    if not stylised:  # the camera's softness
        k = torch.tensor([0.25, 0.5, 0.25], device=dev)
        k2 = (k[:, None] * k[None, :])[None, None].repeat(3, 1, 1, 1)
        img = F.conv2d(F.pad(img, [1, 1, 1, 1], mode="replicate"), k2, groups=3)
    return img * 2 - 1


def render_photo(p: torch.Tensor, res: int = 64) -> torch.Tensor:
    """The "photo" drawing of ``p`` [N, NUM_PARAMS] -> [N, 3, res, res] in [-1, 1]."""
    return _draw(p, res, stylised=False)


def render_cg(p: torch.Tensor, res: int = 64) -> torch.Tensor:
    """The CG drawing of ``p`` [N, NUM_PARAMS] -> [N, 3, res, res] in [-1, 1]."""
    return _draw(p, res, stylised=True)


STYLES = {"photo": render_photo, "cg": render_cg}


def render(p: torch.Tensor, style: str, res: int = 64) -> torch.Tensor:
    """Draw ``p`` in one of :data:`STYLES` ("photo" or "cg")."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {sorted(STYLES)}")
    return STYLES[style](p, res)
