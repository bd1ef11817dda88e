"""Where weights live: the cache directory, its layout, locks, hashing, and read-only foreign locations.

Layout under the cache root (see :func:`cache_dir`)::

    weights/<id>/<file>                 the verified file
    weights/<id>/<file>.sha256          its sha256, ``sha256sum`` format (anchor of unpinned files)
    weights/<id>/<file>.part            an unfinished download (resumed by the next attempt)
    weights/<id>/<file>.lock            per-file lock (two processes never fetch or convert the same file)
    weights/<id>/derived/<stem>-<sha8>.safetensors   conversions, keyed by the source's sha256
    converted/<sha256>.safetensors      conversions of files that are not registry records
    hashes/<key>.json                   memo of computed hashes (valid while path, size, mtime match)

Nothing is ever written into site-packages, a foreign cache or the working directory.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import filelock
from tqdm.auto import tqdm

from realface.utils.fs import atomic_write_text
from realface.weights.errors import WeightsError
from realface.weights.registry import WeightRecord

__all__ = [
    "cache_dir",
    "is_offline",
    "offline_reason",
    "cached_file_path",
    "anchor_path",
    "read_anchor",
    "write_anchor",
    "sha256_file",
    "forget_hash",
    "remember_hash",
    "file_lock",
    "package_file",
    "package_dir",
    "foreign_candidates",
]

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache root. Precedence: ``explicit`` > ``$REALFACE_HOME`` > ``$XDG_CACHE_HOME/realface`` >
    ``~/.cache/realface``. Empty variables count as unset; a relative ``XDG_CACHE_HOME`` is ignored, as
    the XDG specification requires. The directory is not created here."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser().absolute()
    home = os.environ.get("REALFACE_HOME", "")
    if home:
        return Path(home).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(os.path.expanduser(xdg)):
        return Path(xdg).expanduser() / "realface"
    return Path.home() / ".cache" / "realface"


def offline_reason() -> str | None:
    """The variable that forbids network access (``REALFACE_OFFLINE`` or ``HF_HUB_OFFLINE``), or None."""
    for var in ("REALFACE_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


def is_offline() -> bool:
    """True when ``REALFACE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on: no network at all."""
    return offline_reason() is not None


def cached_file_path(record: WeightRecord, root: Path) -> Path:
    """``<root>/weights/<id>/<file>``: where the record's file lives in the cache (it may not exist)."""
    return root / "weights" / record.id / record.filename


def anchor_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_anchor(path: Path) -> str | None:
    """The sha256 recorded beside ``path`` (``<path>.sha256``), or None when there is none."""
    try:
        text = anchor_path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    digest = text.split()[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"{anchor_path(path)}: not a sha256 record; delete it and the file beside it")
    return digest


def write_anchor(path: Path, sha256: str) -> None:
    """Record ``sha256`` beside ``path`` in ``sha256sum`` format (``sha256sum -c`` can check it)."""
    atomic_write_text(anchor_path(path), f"{sha256}  {path.name}\n")


# --- hashing ---------------------------------------------------------------------------------------


def _memo_file(path: Path, root: Path) -> Path:
    key = hashlib.sha1(str(path).encode("utf-8"), usedforsecurity=False).hexdigest()[:24]
    return root / "hashes" / f"{key}.json"


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "dev": st.st_dev}


def sha256_file(
    path: str | os.PathLike,
    *,
    root: Path | None = None,
    use_memo: bool = True,
    progress: bool = False,
) -> str:
    """The sha256 (lower-case hex) of a file, streamed in 1 MiB chunks.

    With ``root`` and ``use_memo``, the digest is memoised under ``<root>/hashes`` together with the file's
    size, mtime and inode, and reused while those are unchanged; any change forces a re-hash. The memo is
    never written next to the file itself (it may be in site-packages or belong to the user).
    """
    path = Path(path).absolute()
    st = path.stat()
    memo = _memo_file(path, root) if root is not None else None
    if memo is not None and use_memo:
        try:
            data = json.loads(memo.read_text(encoding="utf-8"))
            if data.get("path") == str(path) and data.get("stat") == _stat_key(st):
                return str(data["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    h = hashlib.sha256()
    with (
        open(path, "rb") as f,
        tqdm(
            total=st.st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"sha256 {path.name}",
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    digest = h.hexdigest()
    if memo is not None:
        try:
            st_after = path.stat()
            if _stat_key(st_after) == _stat_key(st):  # not modified while we read it
                record = {"path": str(path), "stat": _stat_key(st), "sha256": digest}
                atomic_write_text(memo, json.dumps(record))
        except OSError as exc:  # a read-only cache only costs a re-hash next time
            log.debug("could not memoise the hash of %s: %s", path, exc)
    return digest


def remember_hash(path: str | os.PathLike, sha256: str, root: Path) -> None:
    """Memoise a digest the caller has just computed from the file's bytes (saves a second read)."""
    path = Path(path).absolute()
    record = {"path": str(path), "stat": _stat_key(path.stat()), "sha256": sha256}
    try:
        atomic_write_text(_memo_file(path, root), json.dumps(record))
    except OSError as exc:
        log.debug("could not memoise the hash of %s: %s", path, exc)


def forget_hash(path: str | os.PathLike, root: Path) -> None:
    """Drop the memoised hash of ``path`` so that its next use re-hashes it."""
    with contextlib.suppress(FileNotFoundError):
        _memo_file(Path(path).absolute(), root).unlink()


# --- locking ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, what: str, *, read_only_ok: bool = False) -> Iterator[None]:
    """Hold ``<path>.lock`` (an OS-level lock: released if the holder dies). Logs when it has to wait.

    When the folder cannot be written (a shared read-only cache) and ``read_only_ok`` is set, the block runs
    without the lock: readers are safe without it because files only appear by atomic rename, and nothing
    can be written there anyway. Otherwise an unwritable folder raises :class:`WeightsError`.
    """
    lock = filelock.FileLock(str(path) + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=1.0)
        except filelock.Timeout:
            log.info("waiting for another process that holds %s (%s)", lock.lock_file, what)
            lock.acquire()
    except OSError as exc:
        if not read_only_ok:
            raise WeightsError(
                f"cannot lock {lock.lock_file} ({exc}); set REALFACE_HOME to a writable folder"
            ) from exc
        log.debug("cache folder %s is not writable (%s); reading it without a lock", path.parent, exc)
        yield
        return
    try:
        yield
    finally:
        lock.release()


# --- package-shipped and foreign files -------------------------------------------------------------


def package_dir(name: str) -> Path | None:
    """Folder of an installed package, located without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_file(record: WeightRecord) -> Path | None:
    """The file inside the installed package that ships it, or None (not such a record, or not installed)."""
    if record.package is None or record.package_path is None:
        return None
    folder = package_dir(record.package)
    if folder is None:
        return None
    path = folder / record.package_path
    return path if path.is_file() else None


def _torch_hub_dir() -> Path:
    torch_home = os.environ.get("TORCH_HOME", "")
    if torch_home:
        return Path(torch_home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "torch" / "hub"


def _dnnlib_dir() -> Path:
    env = os.environ.get("DNNLIB_CACHE_DIR", "")
    if env:
        return Path(env).expanduser() / "downloads"
    return Path.home() / ".cache" / "dnnlib" / "downloads"


def foreign_candidates(record: WeightRecord) -> list[Path]:
    """Existing files at the record's foreign locations (other tools' caches). Not yet verified."""
    found: list[Path] = []
    for template in record.foreign:
        head, _, tail = template.partition("}/")
        key = head.lstrip("{")
        if key == "torch_hub":
            base: Path | None = _torch_hub_dir()
        elif key == "dnnlib":
            base = _dnnlib_dir()
        elif key.startswith("pkg:"):
            base = package_dir(key[4:])
        else:
            raise ValueError(f"weight {record.id!r}: unknown foreign location {template!r}")
        if base is None:
            continue
        for match in sorted(glob.glob(glob.escape(str(base)) + "/" + tail)):
            p = Path(match)
            if p.is_file():
                found.append(p)
    return found
