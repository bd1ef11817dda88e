"""Where weights live: the cache directory, its layout, locks, hashing, and read-only foreign locations.

Layout under the cache root (see :func:`cache_dir`)::

    weights/<id>/<file>                 the verified file
    weights/<id>/<file>.sha256          its sha256, ``sha256sum`` format (anchor of unpinned files)
    weights/<id>/<file>.part            an unfinished download (resumed by the next attempt)
    weights/<id>/<file>.lock            per-file lock (two processes never fetch or convert the same file)
    weights/<id>/derived/<stem>-<sha8>.safetensors   conversions, keyed by the source's sha256
    converted/<sha256>.safetensors      conversions of files that are not registry records

Nothing is ever written into site-packages, a foreign cache or the working directory. Every file is
hashed completely on its first use in each process (see :func:`sha256_file`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import logging
import os
import threading
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
    "clear_hash_memo",
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
#
# The guarantee: a file is read completely and hashed the first time a process uses it, so a file that
# was corrupted in place (even with its size and mtime kept) is never handed out silently. The digest is
# then memoised *in this process only*, keyed by path, size, mtime, inode and device, so repeated use
# within one run costs nothing; any change of those re-hashes. Nothing is memoised on disk (a memo on
# disk would let bit rot, or a deliberate edit that restores the mtime, pass unseen). The cost is one
# full read per file and process: about 1 s for the 381 MB ``ffhq.pkl`` at 400 MB/s.

_PROCESS_MEMO: dict[tuple[str, int, int, int, int], str] = {}
_MEMO_LOCK = threading.Lock()


def _memo_key(path: Path, st: os.stat_result) -> tuple[str, int, int, int, int]:
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _legacy_memo_file(path: Path, root: Path) -> Path:
    """Where earlier versions memoised hashes on disk (removed by :func:`forget_hash`)."""
    key = hashlib.sha1(str(path).encode("utf-8"), usedforsecurity=False).hexdigest()[:24]
    return root / "hashes" / f"{key}.json"


def sha256_file(
    path: str | os.PathLike,
    *,
    root: Path | None = None,
    use_memo: bool = True,
    progress: bool = False,
) -> str:
    """The sha256 (lower-case hex) of a file, streamed in 1 MiB chunks.

    With ``use_memo``, a digest this process already computed for the same path, size, mtime, inode and
    device is reused; otherwise (first use in this process, any change, or ``use_memo=False``) every byte
    is read. ``root`` is accepted for compatibility and not used: nothing is written to disk.
    """
    del root
    path = Path(path).absolute()
    st = path.stat()
    key = _memo_key(path, st)
    if use_memo:
        with _MEMO_LOCK:
            known = _PROCESS_MEMO.get(key)
        if known is not None:
            return known
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
    with contextlib.suppress(OSError):
        if _memo_key(path, path.stat()) == key:  # not modified while we read it
            with _MEMO_LOCK:
                _PROCESS_MEMO[key] = digest
    return digest


def remember_hash(path: str | os.PathLike, sha256: str, root: Path | None = None) -> None:
    """Memoise (in this process) a digest the caller has just computed from the file's bytes, e.g. while
    downloading or copying it, which saves a second read."""
    del root
    path = Path(path).absolute()
    with _MEMO_LOCK:
        _PROCESS_MEMO[_memo_key(path, path.stat())] = sha256


def forget_hash(path: str | os.PathLike, root: Path | None = None) -> None:
    """Drop every memoised hash of ``path`` so that its next use re-hashes it (and, with ``root``, the
    on-disk memo an earlier version may have left in ``<root>/hashes``)."""
    path = Path(path).absolute()
    with _MEMO_LOCK:
        for key in [k for k in _PROCESS_MEMO if k[0] == str(path)]:
            del _PROCESS_MEMO[key]
    if root is not None:
        with contextlib.suppress(OSError):
            _legacy_memo_file(path, root).unlink()


def clear_hash_memo() -> None:
    """Forget every memoised hash, as a new process would (every file is re-hashed on its next use)."""
    with _MEMO_LOCK:
        _PROCESS_MEMO.clear()


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
