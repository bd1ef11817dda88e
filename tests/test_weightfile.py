"""realface.utils.weightfile: the one reader of foreign weight files (formats, refusals, key checks)."""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from realface.errors import CheckpointError, UnsafePickleError
from realface.utils.weightfile import (
    RestrictedUnpickler,
    check_state_dict,
    load_checked,
    pickle_failure,
    read_state_dict,
    read_torch_object,
    sniff_format,
    strip_prefix,
)


def _state() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.tensor([1.0, -1.0])}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reads_safetensors_zip_and_legacy_state_dicts(tmp_path):
    sd = _state()
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "zip.pth")
    torch.save(sd, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(sd, tmp_path / "misnamed.pth")  # the format comes from the bytes, not the suffix
    formats = {}
    for name in ("w.safetensors", "zip.pth", "legacy.pth", "misnamed.pth"):
        formats[name] = sniff_format(tmp_path / name)
        assert _same(read_state_dict(tmp_path / name), sd), name
    assert formats == {
        "w.safetensors": "safetensors",
        "zip.pth": "zip",
        "legacy.pth": "pickle",
        "misnamed.pth": "safetensors",
    }


def test_unreadable_and_foreign_contents_give_one_line_naming_the_file(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04not a torch file at all")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    torch.save({"a": torch.zeros(1), "b": 3}, tmp_path / "mixed.pth")
    cases = {
        "junk.pth": "junk.pth: cannot read the test weights as a PyTorch state dict",
        "list.pth": "list.pth: expected a state dict of test weights, got list",
        "mixed.pth": "mixed.pth: expected a state dict of test weights (names → tensors); entry 'b' is int",
        "absent.pth": "absent.pth: no such file",
    }
    for name, text in cases.items():
        with pytest.raises(CheckpointError) as info:
            read_state_dict(tmp_path / name, "test weights")
        assert text in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(CheckpointError, match="is a directory"):
        read_state_dict(tmp_path, "test weights")


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo executed > /dev/null",))


def test_code_in_a_torch_file_is_refused_without_running_it(tmp_path):
    torch.save({"w": torch.zeros(1), "x": _Boom()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as info:
        read_state_dict(tmp_path / "evil.pth", "weights")
    msg = str(info.value)
    assert "evil.pth: cannot read the weights" in msg and "refused by the weights-only loader" in msg
    assert "\n" not in msg and "weights_only` set to `False" not in msg
    with pytest.raises(CheckpointError, match=r"evil\.pth: cannot read the state as a PyTorch file"):
        read_torch_object(tmp_path / "evil.pth", "state")
    assert read_torch_object(_saved(tmp_path, {"n": 3, "t": torch.ones(2)}))["n"] == 3


def _saved(tmp_path, obj) -> str:
    path = tmp_path / "obj.pt"
    torch.save(obj, path)
    return str(path)


def test_restricted_unpickler_resolves_only_its_allow_list():
    allowed = {("collections", "OrderedDict"): OrderedDict}
    raw = pickle.dumps(OrderedDict(a=1), protocol=2)
    assert RestrictedUnpickler(io.BytesIO(raw), allowed, "not allowed here", "test files").load() == {"a": 1}
    evil = pickle.dumps(_Boom(), protocol=2)
    with pytest.raises(
        UnsafePickleError, match=r"^refusing to load global '(posix|os|nt)\.system': not allowed here$"
    ):
        RestrictedUnpickler(io.BytesIO(evil), allowed, "not allowed here", "test files").load()

    class _WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if obj == "x" else None

    buf = io.BytesIO()
    _WithPid(buf, protocol=2).dump(["x"])
    with pytest.raises(
        UnsafePickleError, match=r"persistent ids are not used by test files \(got 'storage'\)"
    ):
        RestrictedUnpickler(io.BytesIO(buf.getvalue()), allowed, "no", "test files").load()


def test_pickle_failure_names_the_file_and_keeps_the_class(tmp_path):
    p = tmp_path / "f.pkl"
    unsafe = pickle_failure(p, UnsafePickleError("refusing x"), "test pickle", "ends early")
    assert isinstance(unsafe, UnsafePickleError) and str(unsafe) == f"{p}: refusing x"
    assert str(pickle_failure(p, EOFError(), "test pickle", "ends early")) == f"{p}: ends early"
    other = pickle_failure(p, ValueError("bad"), "test pickle", "ends early")
    assert (
        type(other) is CheckpointError and str(other) == f"{p}: not a readable test pickle (ValueError: bad)"
    )


def test_key_and_shape_checks_have_one_format():
    expected = {**_state(), "bn.num_batches_tracked": torch.tensor(0)}
    check_state_dict(expected, _state(), "f.pth", "a test net")  # the counter is optional by default
    given = {"conv.weight": torch.zeros(3, 2), "extra": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, given, "f.pth", "a test net")
    assert str(info.value) == (
        "f.pth: not a test net (missing ['conv.bias'] (1), unexpected ['extra'] (1), "
        "wrong shapes ['conv.weight (3, 2) != (2, 3)'])"
    )
    with pytest.raises(CheckpointError, match=r"missing \['bn.num_batches_tracked'\]"):
        check_state_dict(expected, _state(), "f.pth", "a test net", optional=lambda k: False)


def test_load_checked_copies_and_fills_optional_counters():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    sd = {k: torch.full_like(v, 0.5) for k, v in net.state_dict().items() if "num_batches" not in k}
    load_checked(net, sd, "f.pth", "a test net")
    assert torch.equal(net[0].weight, torch.full_like(net[0].weight, 0.5))
    with pytest.raises(CheckpointError, match=r"^f\.pth: not a test net \(missing \['0.bias'\]"):
        load_checked(net, {k: v for k, v in sd.items() if k != "0.bias"}, "f.pth", "a test net")


def test_strip_prefix_only_when_every_key_has_it():
    sd = _state()
    assert _same(strip_prefix({f"module.{k}": v for k, v in sd.items()}), sd)
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert strip_prefix(mixed).keys() == mixed.keys()
    assert strip_prefix({"net.a": torch.zeros(1)}, ("module.", "net.")).keys() == {"a"}
