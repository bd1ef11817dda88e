"""The catalogue runner: apply one job to many images, resumably, whatever the job does to each image.

A batch reads a list of input files and writes its results into one output folder. Work per image is
slow (minutes on a CPU), so the runner is built to lose nothing: a crash, ``kill -9`` or Ctrl-C at any
moment leaves only complete output files, and the next run over the same folder carries on where the
last one stopped. Inputs are only ever read.

Output folder layout::

    outdir/
      manifest.jsonl       one JSON record per line, appended as the batch goes (format below)
      summary.json         the summary of the latest run (written atomically at its end)
      .batch.lock          held while a run writes here; a second run into the folder is refused
                           (:func:`folder_lock`; the dataset builder locks its build folder the same way)
      shirts/a.png         outputs mirror each input's path relative to the folder it was found in

Manifest format (``manifest.jsonl``, append-only; each line one complete JSON object)::

    {"key": "shirts/a.png",                 # the item's id: its path relative to its input root
     "input": "/abs/catalogue/shirts/a.png",
     "size": 123456, "mtime_ns": 1700000000000000000,   # the input as it was when the item started
     "status": "started" | "done" | "failed",
     "outputs": ["shirts/a.png"],           # relative to outdir (absolute if written elsewhere)
     "error": null | "FaceError: no face found",
     "seconds": 12.5, "time": "2024-05-01T12:00:00.123+00:00", "config_hash": "3f2a9c0d1e4b5a67"}

``key`` names the item, ``size`` + ``mtime_ns`` name the version of its input: a changed input (new
size or modification time) is recognised without reading the file, so a rerun over thousands of
finished images costs one ``stat`` each. (Copying a catalogue without preserving modification
times therefore makes every item count as changed.) Each record is written with a single ``write``
on a file opened with ``O_APPEND`` and then fsynced, so records never interleave and at most the
last line can be cut off by a crash; such a line is ignored with a warning when the manifest is
read, and the next append starts on a fresh line.

Other jobs keep their own records in a :class:`Manifest` of another :class:`RecordKind` (the dataset
builder's, :data:`realface.data.build.DATASET_RECORDS`) and get the same append and read guarantees;
the batch's own lines are :data:`BATCH_RECORDS`.

Resume semantics: the latest record of each key decides. An item is skipped ("already done") only
if that record is ``done``, its ``config_hash`` equals the current job's, the input's size and
modification time are unchanged, every output it lists still exists and they include the item's
planned output (a new output format is a new output). Anything else is run
again: a ``started`` record (the run died or was interrupted during that item), ``failed`` (retried
on every run), a changed input, a different config, or a missing output. Outputs are written by the
job itself through :func:`realface.utils.fs.atomic_path`, so a reader never sees a partial file; the
hidden temporary files that a killed write leaves behind are deleted at the start of the next run.

Collisions are refused when the batch is planned, before the output folder is created: two items
that would write the same output, an output that is an input, and, for a job that writes extra files
beside each output (:class:`ExtraOutputs`, e.g. ``STEM_face<N>_sheet.png``), an item's extras pattern
that another item's output, another item's extras pattern or an input matches. When a redone item
succeeds, its new outputs replace the old ones and the outputs of its earlier runs that it did not
write again (recorded in the manifest, or matching its extras pattern) are deleted, except files
that belong to another item.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
import traceback
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Generic, Literal, TypeVar, overload

import filelock
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from realface.errors import RealFaceError
from realface.imageio import IMAGE_SUFFIXES, image_suffixes_text, list_images
from realface.utils.fs import atomic_write_text
from realface.workers import WorkerJob

__all__ = [
    "IMAGE_EXTENSIONS",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "SUMMARY_NAME",
    "BatchSummary",
    "ExtraOutputs",
    "ItemContext",
    "Manifest",
    "ManifestRecord",
    "BATCH_RECORDS",
    "RecordKind",
    "check_plan",
    "error_message",
    "folder_lock",
    "latest_records",
    "progress_bar",
    "collect_catalogue",
    "collect_inputs",
    "hash_config",
    "item_key",
    "output_path_for",
    "remove_stale_temporaries",
    "run_batch",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = IMAGE_SUFFIXES
"""The suffixes of the files a folder is searched for: :data:`realface.imageio.IMAGE_SUFFIXES`."""

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".batch.lock"

Status = Literal["started", "done", "failed"]
_STATUSES = ("started", "done", "failed")

# Temporary files of realface.utils.fs.atomic_path (".rf-<8 hex><suffix>.tmp"), and of older versions.
_ATOMIC_TEMP = re.compile(r"^\.(rf-[0-9a-f]{8}|.+\.[a-z0-9_]{8})[^/]*\.tmp$")


# --- inputs and output paths ----------------------------------------------------------------------


def _abspath(path: str | os.PathLike) -> Path:
    """Absolute, normalised path (``..`` folded), without resolving symbolic links."""
    return Path(os.path.abspath(os.fspath(path)))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def collect_inputs(
    paths: Sequence[str | os.PathLike],
    recursive: bool = True,
    extensions: Collection[str] = IMAGE_SUFFIXES,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The input files named by ``paths``: files as given, folders expanded.

    Args:
        paths: files and folders. A file is taken whatever its extension; a folder contributes its
            files whose suffix is in ``extensions`` (case-insensitive), in sorted order, searching
            sub-folders when ``recursive``. Hidden files and folders (name starting with ``.``) inside
            a folder are skipped. Symbolic links to files are followed, links to folders are not.
        recursive: search sub-folders (default ``True``).
        extensions: accepted suffixes, with the dot (default :data:`IMAGE_EXTENSIONS`).
        exclude: folders to leave out, typically the output folder when it lies inside an input folder.

    Returns:
        Absolute paths in argument order, each folder's files sorted; a file reached twice (named
        twice, inside two given folders, or through a link) is kept at its first occurrence only.

    Raises:
        RealFaceError: a path does not exist.
    """
    seen: set[str] = set()
    found: list[Path] = []

    def add(path: Path) -> None:
        ident = os.path.realpath(path)
        if ident not in seen:
            seen.add(ident)
            found.append(path)

    for raw in paths:
        path = _abspath(raw)
        if path.is_file():
            add(path)
        elif path.is_dir():
            for file in list_images(path, recursive, suffixes=extensions, exclude=exclude):
                add(file)
        else:
            raise RealFaceError(f"input not found: {raw} (expected an image file or a folder of images)")
    return found


def collect_catalogue(
    paths: Sequence[str | os.PathLike], outdir: str | os.PathLike, recursive: bool = True
) -> list[Path]:
    """The input images of a batch into ``outdir``: :func:`collect_inputs` with ``outdir`` excluded,
    refusing a batch that has nothing to do.

    Raises:
        RealFaceError: a path does not exist; ``outdir`` exists but is not a folder (e.g. an input
            image given as the output folder); or no image was found (the message names the folders
            searched, and says so when one of them is the output folder or lies inside it).
    """
    out = _abspath(outdir)
    named = {_abspath(p) for p in paths}
    if out.exists() and not out.is_dir():
        what = "an input image" if out in named else "a file"
        raise RealFaceError(
            f"output folder {outdir} is {what}, not a folder; choose a folder for the outputs"
        )
    found = collect_inputs(paths, recursive=recursive, exclude=[out])
    if found:
        return found
    folders = [p for p in paths if Path(p).is_dir()]
    inside = [f for f in folders if _within(_abspath(f), out)]
    if inside:
        raise RealFaceError(
            f"input folder {inside[0]} is the output folder {outdir} or lies inside it, so it holds no "
            "input; choose an output folder outside the inputs"
        )
    where = ", ".join(map(str, folders)) or ", ".join(map(str, paths))
    raise RealFaceError(f"no input images found in {where} (looked for {image_suffixes_text()})")


def item_key(input: str | os.PathLike, roots: Sequence[str | os.PathLike] = ()) -> str:
    """The item's id: its path relative to the innermost folder in ``roots`` that contains it (POSIX
    separators), or its file name when no such folder is given (a file named directly)."""
    path = _abspath(input)
    best: Path | None = None
    for root in map(_abspath, roots):
        if root != path and root in path.parents and (best is None or len(root.parts) > len(best.parts)):
            best = root
    return path.name if best is None else path.relative_to(best).as_posix()


def output_path_for(
    input: str | os.PathLike,
    roots: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    suffix: str | None = None,
) -> Path:
    """Where the output of ``input`` goes: ``outdir / item_key(input, roots)``, so that the folder
    structure below each input folder is mirrored (two ``a.png`` in different sub-folders do not
    collide). The input's extension is kept unless ``suffix`` (e.g. ``".png"``) replaces it."""
    out = _abspath(outdir) / PurePosixPath(item_key(input, roots))
    return out if suffix is None else out.with_suffix(suffix)


def hash_config(config: Any) -> str:
    """A short stable hash of a job's config (a dataclass instance, or anything JSON-serialisable).

    The config is written as JSON with sorted keys (paths and other values as ``str``) and hashed with
    SHA-256; the first 16 hex digits are returned. Equal configs give equal hashes across runs.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = {"type": type(config).__qualname__, "fields": dataclasses.asdict(config)}
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- manifest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRecord:
    """One line of the manifest (see the module docstring for the format)."""

    key: str
    input: str
    size: int
    mtime_ns: int
    status: Status
    outputs: tuple[str, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    time: str = ""
    config_hash: str = ""

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "outputs": list(self.outputs)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ManifestRecord:
        """Parse one line; raises ``ValueError`` when it is not a complete, well-formed record."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            record = cls(
                key=str(data["key"]),
                input=str(data["input"]),
                size=int(data["size"]),
                mtime_ns=int(data["mtime_ns"]),
                status=data["status"],
                outputs=tuple(str(o) for o in data["outputs"]),
                error=None if data["error"] is None else str(data["error"]),
                seconds=float(data["seconds"]),
                time=str(data["time"]),
                config_hash=str(data["config_hash"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or malformed field: {exc}") from exc
        if record.status not in _STATUSES:
            raise ValueError(f"unknown status {record.status!r}")
        return record


R = TypeVar("R")


@dataclass(frozen=True)
class RecordKind(Generic[R]):
    """How the records of one kind of manifest are written, read back and identified.

    Attributes:
        name: what messages call the file, e.g. ``"batch manifest"``.
        dump: one record as one line of JSON (no newline).
        parse: one line back into a record; raises ``ValueError`` when it is not a complete record.
        key: the item a record is about; the latest record of each key decides.
    """

    name: str
    dump: Callable[[R], str]
    parse: Callable[[str], R]
    key: Callable[[R], str]


BATCH_RECORDS: RecordKind[ManifestRecord] = RecordKind(
    "batch manifest", ManifestRecord.to_json, ManifestRecord.from_json, lambda r: r.key
)
"""The records of ``realface apply`` batches (:class:`ManifestRecord`)."""


class Manifest(Generic[R]):
    """An append-only JSONL record of a job's items (format and guarantees: module docstring).

    ``Manifest(path)`` holds a batch's :class:`ManifestRecord` lines; other jobs that resume the same
    way (the dataset builder) pass their own :class:`RecordKind`. Writers must hold the folder's lock
    (:func:`folder_lock`; :func:`run_batch` does); readers need not.
    """

    @overload
    def __init__(self: Manifest[ManifestRecord], path: str | os.PathLike) -> None: ...

    @overload
    def __init__(self, path: str | os.PathLike, kind: RecordKind[R]) -> None: ...

    def __init__(self, path: str | os.PathLike, kind: RecordKind[Any] = BATCH_RECORDS) -> None:
        self.path = Path(path)
        self.kind: RecordKind[R] = kind

    def append(self, record: R) -> None:
        """Append ``record`` as one line with a single ``O_APPEND`` write, then fsync.

        If the file ends in a line cut off by a crash, a newline is written first so that the new
        record starts on a line of its own.
        """
        line = self.kind.dump(record).encode("utf-8") + b"\n"
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
                _write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)
        except OSError as exc:
            raise RealFaceError(f"cannot write the {self.kind.name} {self.path}: {exc}") from exc

    def records(self) -> list[R]:
        """All readable records in file order; unreadable lines (a line cut off by a crash, or edited
        by hand) are skipped with a warning. A missing manifest has no records."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RealFaceError(f"cannot read the {self.kind.name} {self.path}: {exc}") from exc
        records = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                records.append(self.kind.parse(raw.decode("utf-8")))
            except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
                log.warning(
                    "ignoring unreadable line %d of %s (%s); it was probably cut off by a crash",
                    number,
                    self.path,
                    exc,
                )
        return records

    def state(self) -> dict[str, R]:
        """The latest record of each key."""
        return latest_records(self.records(), self.kind)


def latest_records(records: Iterable[R], kind: RecordKind[R]) -> dict[str, R]:
    """The latest of ``records`` (in file order) for each key."""
    return {kind.key(r): r for r in records}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / file system
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- running --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemContext:
    """What the job needs to know about the item it processes.

    Attributes:
        input: the input file (read it, never write it).
        key: the item's id in the manifest (its path relative to its input folder).
        output: the suggested output path, ``outdir / key`` (with the batch's ``suffix`` if one was
            given); its folder may not exist yet. Write it with :func:`realface.utils.fs.atomic_path`.
        outdir: the batch's output folder.
        log: a logger for messages about this item.
    """

    input: Path
    key: str
    output: Path
    outdir: Path
    log: logging.Logger


@dataclass(frozen=True)
class ExtraOutputs:
    """Extra files a job writes beside each output, named after the output's stem: the output
    ``out/a.png`` may come with ``out/a`` + a name that ``pattern`` (a regular expression) matches in
    full. Their number is unknown when the batch is planned (one per face, say), so the whole pattern
    is reserved for the item: another item whose output or extras could match it is a collision.

    Attributes:
        pattern: the rest of an extra file's name after the stem, e.g. ``r"_face\\d+_.+"``.
        label: the pattern as messages show it, e.g. ``"_face<N>_*"``.
    """

    pattern: str
    label: str

    def matches(self, stem: str, name: str) -> bool:
        """Whether ``name`` is an extra file of the output whose stem is ``stem``."""
        return name.startswith(stem) and re.fullmatch(self.pattern, name[len(stem) :]) is not None


ProcessFn = Callable[[Path, ItemContext], Sequence[Path]]
"""``process(input, ctx) -> outputs``: does the work for one item, writes each output atomically, and
returns the paths it wrote. Raise (preferably a :class:`RealFaceError`) to mark the item failed."""


@dataclass(frozen=True)
class BatchSummary:
    """The outcome of one :func:`run_batch` call.

    Attributes:
        total: number of items given.
        done: items processed successfully in this run.
        skipped: items already done by an earlier run (same input, same config, outputs present).
        failed: ``(key, error)`` of each item that failed in this run.
        not_run: items left untouched because the run was interrupted or stopped at a failure.
        seconds: wall time of the run.
        redone_changed: of the items done, those done before whose input changed or outputs vanished.
        redone_config: of the items done, those done before under a different config.
        retried: of the items done, those that had failed or had been cut off in an earlier run.
        interrupted: the run was stopped by Ctrl-C (``KeyboardInterrupt``).
        outdir: the output folder (holds ``manifest.jsonl`` and ``summary.json``).
        config_hash: the job's config hash.
    """

    total: int
    done: int
    skipped: int
    failed: tuple[tuple[str, str], ...]
    not_run: int
    seconds: float
    redone_changed: int = 0
    redone_config: int = 0
    retried: int = 0
    interrupted: bool = False
    outdir: str = ""
    config_hash: str = ""

    @property
    def exit_code(self) -> int:
        """Process exit status: 130 if interrupted, 1 if any item failed, else 0."""
        return 130 if self.interrupted else 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failed"] = [{"key": k, "error": e} for k, e in self.failed]
        data["exit_code"] = self.exit_code
        return data

    def format(self, max_errors: int = 20) -> str:
        """A short human-readable summary: counts, why items were redone, and the first failures."""
        redone = [
            f"{n} {why}"
            for n, why in (
                (self.redone_changed, "input changed"),
                (self.redone_config, "config changed"),
                (self.retried, "retried"),
            )
            if n
        ]
        state = "interrupted" if self.interrupted else "finished"
        lines = [
            f"batch {state}: {self.total} items in {_duration(self.seconds)}",
            f"  done      {self.done:6d}" + (f"   ({', '.join(redone)})" if redone else ""),
            f"  skipped   {self.skipped:6d}   (already done)",
            f"  failed    {len(self.failed):6d}",
        ]
        if self.not_run:
            lines.append(f"  not run   {self.not_run:6d}   (run again to continue)")
        for key, error in self.failed[:max_errors]:
            lines.append(f"  ! {key}: {error}")
        if len(self.failed) > max_errors:
            lines.append(f"  ! … and {len(self.failed) - max_errors} more, see {SUMMARY_NAME}")
        if self.outdir:
            lines.append(f"manifest: {Path(self.outdir) / MANIFEST_NAME}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def remove_stale_temporaries(outdir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``outdir`` (recursively)
    and return them. Only call this while holding the folder's batch lock."""
    removed = []
    for dirpath, _dirnames, filenames in os.walk(Path(outdir)):
        for name in filenames:
            if _ATOMIC_TEMP.match(name):
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    if removed:
        log.info("removed %d unfinished temporary file(s) left by an interrupted run", len(removed))
    return removed


@contextlib.contextmanager
def folder_lock(folder: Path, *, job: str = "batch", what: str = "output folder") -> Iterator[None]:
    """Hold ``folder``'s lock (:data:`LOCK_NAME`) for the ``with`` block, or refuse at once.

    One lock file serves every job that writes a resumable folder (a batch's output folder, the
    dataset builder's build folder): a second writer is refused with a message naming the ``job``
    (``"batch"``, ``"build"``) and the lock file; it never waits.

    Raises:
        RealFaceError: another process holds the lock, or the lock file cannot be made.
    """
    lock = filelock.FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RealFaceError(
            f"another {job} is already writing into {folder} (it holds {lock.lock_file}); "
            f"wait for it to finish or choose another {what}"
        ) from None
    except OSError as exc:
        raise RealFaceError(f"cannot lock the {what} {folder}: {exc}") from exc
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class _Item:
    input: Path
    key: str
    output: Path


def _plan(
    items: Sequence[str | os.PathLike],
    roots: Sequence[str | os.PathLike],
    outdir: Path,
    suffix: str | None,
    extras: ExtraOutputs | None = None,
) -> list[_Item]:
    if not items:
        raise RealFaceError(
            f"no input images to process in {', '.join(map(str, roots)) or 'the given paths'}"
        )
    planned: dict[str, _Item] = {}
    for raw in items:
        path = _abspath(raw)
        if _within(path, outdir):
            raise RealFaceError(
                f"input {path} is inside the output folder {outdir}; choose an output folder outside "
                "the inputs, or pass it to collect_inputs(exclude=...)"
            )
        key = item_key(path, roots)
        if key in planned:
            raise RealFaceError(
                f"inputs {planned[key].input} and {path} would both be written as {key!r} in {outdir}; "
                "pass their common parent folder instead, or run them into separate output folders"
            )
        planned[key] = _Item(path, key, output_path_for(path, roots, outdir, suffix))
    items_list = list(planned.values())
    clashes = _collisions(items_list, outdir, extras)
    if clashes:
        listed = "; ".join(clashes[:_MAX_LISTED])
        more = f"; and {len(clashes) - _MAX_LISTED} more" if len(clashes) > _MAX_LISTED else ""
        raise RealFaceError(
            f"{len(clashes)} output collision(s) in {outdir}: {listed}{more}; nothing was written. Rename "
            "the inputs, choose another output format, or run them into separate output folders"
        )
    return items_list


_MAX_LISTED = 5


def _collisions(planned: Sequence[_Item], outdir: Path, extras: ExtraOutputs | None) -> list[str]:
    """Every pair of planned items whose outputs (or reserved extras) would overwrite each other or an
    input, as readable phrases. Paths are compared as given and, for outputs against inputs, through
    symbolic links too."""

    def rel(path: Path) -> str:
        return path.relative_to(outdir).as_posix() if _within(path, outdir) else str(path)

    clashes: list[str] = []
    by_output: dict[Path, _Item] = {}
    for item in planned:
        first = by_output.setdefault(item.output, item)
        if first is not item:
            clashes.append(f"{first.key} and {item.key} both write {rel(item.output)}")
    real_inputs = {os.path.realpath(i.input): i for i in planned}
    for item in planned:
        hit = real_inputs.get(os.path.realpath(item.output))
        if hit is not None:
            clashes.append(f"{item.key} writes {rel(item.output)}, which is the input {hit.input}")
    if extras is None:
        return clashes

    stems: dict[str, dict[str, _Item]] = {}  # real output folder -> output stem -> item
    for item in planned:
        in_folder = stems.setdefault(os.path.realpath(item.output.parent), {})
        stem = item.output.with_suffix("").name
        first = in_folder.setdefault(stem, item)
        if first is not item:
            clashes.append(
                f"{first.key} and {item.key} both write {rel(item.output.parent / stem)}{extras.label}"
            )

    def owners(path: Path) -> Iterator[tuple[str, _Item]]:
        in_folder = stems.get(os.path.realpath(path.parent), {})
        name = path.name
        for end in range(1, len(name)):
            owner = in_folder.get(name[:end])
            if owner is not None and extras.matches(name[:end], name):
                yield name[:end], owner

    for item in planned:
        for stem, owner in owners(item.output):
            if owner is not item:
                clashes.append(
                    f"{item.key} writes {rel(item.output)}, a name reserved for the extras "
                    f"{rel(owner.output.parent / stem)}{extras.label} of {owner.key}"
                )
    for item in planned:
        for stem, owner in owners(item.input):
            clashes.append(
                f"the extras {rel(owner.output.parent / stem)}{extras.label} of {owner.key} would "
                f"overwrite the input {item.input}"
            )
    return clashes


def check_plan(
    items: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    roots: Sequence[str | os.PathLike] = (),
    suffix: str | None = None,
    extras: ExtraOutputs | None = None,
) -> None:
    """Refuse, without touching anything, the batch that :func:`run_batch` with these arguments would
    refuse when planning (no item, colliding outputs, an input inside ``outdir``): lets a front end
    stop before loading its models. Raises :class:`RealFaceError`."""
    _plan(items, roots, _abspath(outdir), suffix, extras)


def _redo_reason(
    prev: ManifestRecord | None, st: os.stat_result | None, config: str, outdir: Path, output: Path
) -> str:
    """Why an item must run: "new", "retry", "changed", "config"; "" when it is already done.
    ``output`` is the item's planned output: one its last run did not write (another output format,
    say) counts as a config change."""
    if prev is None:
        return "new"
    if prev.status != "done":
        return "retry"
    if st is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return "changed"
    if not all((outdir / o).exists() for o in prev.outputs):
        return "changed"
    if prev.config_hash != config or _record_output(output, outdir) not in prev.outputs:
        return "config"
    return ""


def _record_output(path: Path, outdir: Path) -> str:
    path = _abspath(path)
    return path.relative_to(outdir).as_posix() if outdir in path.parents else str(path)


def error_message(exc: BaseException) -> str:
    """How a failed item's error is recorded: a :class:`RealFaceError`'s own message, otherwise
    ``"<Type>: <message>"``."""
    if isinstance(exc, RealFaceError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_batch(
    items: Sequence[str | os.PathLike],
    process: ProcessFn | WorkerJob,
    outdir: str | os.PathLike,
    *,
    config_hash: str,
    roots: Sequence[str | os.PathLike] = (),
    suffix: str | None = None,
    progress: bool = True,
    stop_on_error: bool = False,
    on_plan: Callable[[int, int], None] | None = None,
    extras: ExtraOutputs | None = None,
    files: Mapping[str, str] | None = None,
) -> BatchSummary:
    """Run ``process`` over every item not already done, recording each in ``outdir/manifest.jsonl``.

    For each item to run: a ``started`` record is appended, ``process(input, ctx)`` is called, then a
    ``done`` record (with the returned outputs and the time taken) or a ``failed`` record (with the
    error) is appended, and the batch goes on with the next item. A :class:`RealFaceError` is recorded
    by its message, any other exception as ``"<Type>: <message>"`` with its traceback logged at debug
    level. Which items are skipped, and why others are redone, is described in the module docstring.

    Args:
        items: input files, e.g. from :func:`collect_inputs`; they are only read.
        process: the job for one item (see :data:`ProcessFn`); it must write its outputs atomically
            (:func:`realface.utils.fs.atomic_path`) and return their paths, which must exist. A
            :class:`realface.workers.WorkerJob` runs the items in worker processes instead (this process
            still plans, holds the lock and writes every record; see :mod:`realface.workers`).
        outdir: the output folder; created if needed. Inputs must not lie inside it.
        config_hash: :func:`hash_config` of the job's config; items done under another config are redone.
        roots: the folders the items were collected from; each item's key and output path are its path
            relative to the innermost root containing it (default: its file name).
        suffix: replaces the input's extension in ``ctx.output`` (default: keep it).
        progress: show a progress bar with ETA on stderr.
        stop_on_error: stop at the first failed item instead of going on.
        on_plan: called once before the first item with (items to run, items skipped), e.g. for a
            progress display of its own.
        extras: the extra files the job writes beside each output (reserved when planning, and
            removed when a redone item no longer writes them); None: the job writes only ``ctx.output``
            (or outputs it reports itself).
        files: text files to write into ``outdir`` (name -> content, e.g. ``config.json``), atomically
            and only once the folder's lock is held.

    Returns:
        The :class:`BatchSummary`, also written atomically to ``outdir/summary.json``. Ctrl-C stops the
        run between records: the interrupted item keeps its ``started`` record (so it runs again next
        time) and the summary is returned with ``interrupted=True``.

    Raises:
        RealFaceError: there is no item; another run holds the folder's lock; outputs collide (two
            inputs map to the same output, an output or reserved extras name is an input or another
            item's); an input lies inside ``outdir``; or the manifest cannot be written. Nothing is
            written into ``outdir`` before the lock is held, and nothing at all when planning fails.
    """
    out = _abspath(outdir)
    planned = _plan(items, roots, out, suffix, extras)
    _make_outdir(out)
    with folder_lock(out):
        remove_stale_temporaries(out)
        for name, text in (files or {}).items():
            atomic_write_text(out / name, text)
        manifest = Manifest(out / MANIFEST_NAME)
        records = manifest.records()
        todo = _todo(planned, latest_records(records, BATCH_RECORDS), config_hash, out)
        skipped = len(planned) - len(todo)
        if skipped:
            log.info("%d of %d items already done in %s", skipped, len(planned), out)
        if on_plan is not None:
            on_plan(len(todo), skipped)
        stale = _StaleOutputs(out, planned, records, extras, protected=set(files or ()))
        start = time.monotonic()
        with progress_bar(len(planned), initial=skipped, progress=progress, desc="batch") as bar:
            if isinstance(process, WorkerJob) and min(process.workers, len(todo)) > 1:
                n = min(process.workers, len(todo))
                outcome = _run_todo_workers(
                    todo, process, n, manifest, out, config_hash, stale, bar, stop_on_error
                )
            else:
                fn = _in_process(process) if todo else _nothing_to_run
                outcome = _run_todo(todo, fn, manifest, out, config_hash, stale, bar, stop_on_error)
        summary = BatchSummary(
            total=len(planned),
            done=outcome.counts["done"],
            skipped=skipped,
            failed=tuple(outcome.failed),
            not_run=len(todo) - outcome.finished,
            seconds=time.monotonic() - start,
            redone_changed=outcome.counts["changed"],
            redone_config=outcome.counts["config"],
            retried=outcome.counts["retry"],
            interrupted=outcome.interrupted,
            outdir=str(out),
            config_hash=config_hash,
        )
        atomic_write_text(
            out / SUMMARY_NAME, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n"
        )
    return summary


def _in_process(process: ProcessFn | WorkerJob) -> ProcessFn:
    """The job to run here: a :class:`WorkerJob` run in this process (one worker, or one item)."""
    return process.setup() if isinstance(process, WorkerJob) else process


def _nothing_to_run(path: Path, ctx: ItemContext) -> Sequence[Path]:
    raise AssertionError("no item to run")


def _make_outdir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RealFaceError(f"output folder {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RealFaceError(f"cannot create the output folder {out}: {exc}") from exc


def _todo(
    planned: Sequence[_Item], state: Mapping[str, ManifestRecord], config_hash: str, out: Path
) -> list[tuple[_Item, str]]:
    """The planned items that must run, each with why (:func:`_redo_reason`), in plan order."""
    todo: list[tuple[_Item, str]] = []
    for item in planned:
        try:
            st: os.stat_result | None = item.input.stat()
        except OSError:
            st = None
        reason = _redo_reason(state.get(item.key), st, config_hash, out, item.output)
        if reason:
            todo.append((item, reason))
    return todo


@contextlib.contextmanager
def progress_bar(
    total: int, *, initial: int = 0, progress: bool = True, desc: str = "batch"
) -> Iterator[tqdm]:
    """A progress bar with ETA on stderr over ``total`` items (``initial`` already done), with log
    messages printed above it while it runs; a disabled bar when ``progress`` is false."""
    redirect = logging_redirect_tqdm() if progress else contextlib.nullcontext()
    with (
        redirect,
        tqdm(total=total, initial=initial, disable=not progress, unit="img", desc=desc) as bar,
    ):
        yield bar


@dataclass
class _Outcome:
    """What one run of the to-do list did."""

    counts: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"done": 0, "new": 0, "changed": 0, "config": 0, "retry": 0}
    )
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    finished: int = 0
    interrupted: bool = False

    def record(self, key: str, reason: str, error: str | None, bar: Any) -> None:
        """Count one finished item (``error`` None: done, for ``reason``) and advance the progress bar."""
        self.finished += 1
        if error is None:
            self.counts["done"] += 1
            self.counts[reason] += 1
        else:
            self.failed.append((key, error))
        bar.set_postfix_str(f"{key} {'failed' if error else 'done'}", refresh=False)
        bar.update(1)


def _run_todo(
    todo: Sequence[tuple[_Item, str]],
    process: ProcessFn,
    manifest: Manifest[ManifestRecord],
    out: Path,
    config_hash: str,
    stale: _StaleOutputs,
    bar: tqdm,
    stop_on_error: bool,
) -> _Outcome:
    """Run the items in order until done, the first failure (``stop_on_error``) or Ctrl-C."""
    outcome = _Outcome()
    try:
        for item, reason in todo:
            bar.set_postfix_str(f"{item.key} running", refresh=True)
            error = _run_item(item, reason, process, manifest, out, config_hash, stale.remove)
            outcome.record(item.key, reason, error, bar)
            if error is not None and stop_on_error:
                log.warning("stopping at the first failure (stop_on_error)")
                break
    except KeyboardInterrupt:
        outcome.interrupted = True
        log.warning("interrupted; run the same command again to continue")
    return outcome


class _StaleOutputs:
    """Deletes the outputs that a redone item wrote in earlier runs but not in this one.

    Candidates: the outputs of the item's earlier ``done`` records, and the files beside its output
    that match its :class:`ExtraOutputs` pattern. Never deleted: what the item just wrote, a planned
    output of another item, a file recorded as another item's output, anything outside ``outdir``,
    and the batch's own files.
    """

    def __init__(
        self,
        outdir: Path,
        planned: Sequence[_Item],
        records: Sequence[ManifestRecord],
        extras: ExtraOutputs | None,
        protected: set[str],
    ) -> None:
        self.outdir, self.extras = outdir, extras
        self.protected = {MANIFEST_NAME, SUMMARY_NAME, LOCK_NAME, *protected}
        self.planned = {_record_output(i.output, outdir): i.key for i in planned}
        self.earlier: dict[str, set[str]] = {}
        self.owners: dict[str, set[str]] = {}
        for r in records:
            if r.status == "done":
                self.earlier.setdefault(r.key, set()).update(r.outputs)
                for o in r.outputs:
                    self.owners.setdefault(o, set()).add(r.key)

    def remove(self, item: _Item, written: Sequence[str]) -> None:
        candidates = set(self.earlier.get(item.key, ()))
        if self.extras is not None and item.output.parent.is_dir():
            stem = item.output.with_suffix("").name
            with os.scandir(item.output.parent) as entries:
                for entry in entries:
                    if self.extras.matches(stem, entry.name) and entry.is_file():
                        candidates.add(_record_output(Path(entry.path), self.outdir))
        removed = []
        for rel in sorted(candidates - set(written)):
            path = _abspath(self.outdir / rel)
            if (
                rel in self.protected
                or self.planned.get(rel, item.key) != item.key
                or self.owners.get(rel, set()) - {item.key}
                or not _within(path, self.outdir)
            ):
                continue
            try:
                path.unlink()
                removed.append(rel)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the stale output %s of %s: %s", path, item.key, exc)
        if removed:
            log.info(
                "%s: removed %d output(s) of an earlier run: %s", item.key, len(removed), ", ".join(removed)
            )
        self.earlier[item.key] = set(written)
        for o in written:
            self.owners.setdefault(o, set()).add(item.key)


def _run_item(
    item: _Item,
    reason: str,
    process: ProcessFn,
    manifest: Manifest[ManifestRecord],
    outdir: Path,
    config_hash: str,
    on_success: Callable[[_Item, Sequence[str]], None] | None = None,
) -> str | None:
    """Run one item and record it; return ``None`` on success, else the error message. ``on_success``
    is called with the item's outputs once they are written, before its ``done`` record."""
    started, error = _start_item(item, manifest, config_hash)
    log.debug("processing %s (%s)", item.key, reason)

    t0 = time.monotonic()
    ctx = ItemContext(input=item.input, key=item.key, output=item.output, outdir=outdir, log=log)
    outputs: tuple[str, ...] = ()
    if error is None:
        try:
            written = process(item.input, ctx)
            outputs = _check_outputs(item, written, outdir, on_success)
        except Exception as exc:
            error = error_message(exc)
            log.debug("%s failed:\n%s", item.key, traceback.format_exc())
    _finish_item(manifest, started, outputs, error, time.monotonic() - t0)
    return error


def _start_item(
    item: _Item, manifest: Manifest[ManifestRecord], config_hash: str
) -> tuple[ManifestRecord, str | None]:
    """Append the item's ``started`` record (its input's size and modification time); returns it,
    with the error when the input cannot be read."""
    error: str | None = None
    try:
        st = item.input.stat()
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError as exc:
        size, mtime_ns = -1, -1
        error = f"cannot read input {item.input}: {exc.strerror or exc}"
    started = ManifestRecord(
        key=item.key,
        input=str(item.input),
        size=size,
        mtime_ns=mtime_ns,
        status="started",
        time=_now(),
        config_hash=config_hash,
    )
    manifest.append(started)
    return started, error


def _check_outputs(
    item: _Item,
    written: Iterable[str | os.PathLike],
    outdir: Path,
    on_success: Callable[[_Item, Sequence[str]], None] | None,
) -> tuple[str, ...]:
    """The outputs a job reported, as recorded; raises when one does not exist. Calls ``on_success``."""
    paths = [Path(p) for p in written]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise RealFaceError(f"the job reported outputs that do not exist: {', '.join(missing)}")
    outputs = tuple(_record_output(p, outdir) for p in paths)
    if on_success is not None:
        on_success(item, outputs)
    return outputs


def _finish_item(
    manifest: Manifest[ManifestRecord],
    started: ManifestRecord,
    outputs: tuple[str, ...],
    error: str | None,
    seconds: float,
) -> None:
    """Append the item's ``done`` or ``failed`` record."""
    if error is None:
        manifest.append(
            dataclasses.replace(started, status="done", outputs=outputs, seconds=seconds, time=_now())
        )
        log.debug("done %s in %.1fs", started.key, seconds)
    else:
        manifest.append(
            dataclasses.replace(started, status="failed", error=error, seconds=seconds, time=_now())
        )
        log.warning("failed %s: %s", started.key, error)


def _run_todo_workers(
    todo: Sequence[tuple[_Item, str]],
    job: WorkerJob,
    n: int,
    manifest: Manifest[ManifestRecord],
    out: Path,
    config_hash: str,
    stale: _StaleOutputs,
    bar: tqdm,
    stop_on_error: bool,
) -> _Outcome:
    """:func:`_run_todo` with the items run in ``n`` worker processes (:mod:`realface.workers`).

    This process stays the only writer of the manifest: an item's ``started`` record is appended when
    it is handed to a worker, its ``done`` / ``failed`` record when the worker answers. A worker that
    dies fails the item it was running (retried by the next run); the others go on. Ctrl-C kills the
    workers: the items in flight keep their ``started`` records.
    """
    from realface.workers import WorkerPool

    outcome = _Outcome()
    pending = deque(todo)
    running: dict[int, tuple[_Item, str, ManifestRecord, float]] = {}
    pool = WorkerPool(job.setup, n, job.threads)
    force = True
    try:
        pool.start()
        log.info("running %d items in %d worker processes", len(todo), n)
        stopping = False

        def record(item: _Item, reason: str, error: str | None) -> None:
            nonlocal stopping
            outcome.record(item.key, reason, error, bar)
            if error is not None and stop_on_error and not stopping:
                log.warning("stopping at the first failure (stop_on_error)")
                stopping = True

        while True:
            idle = pool.idle()
            while idle and pending and not stopping:
                item, reason = pending.popleft()
                started, error = _start_item(item, manifest, config_hash)
                if error is not None:
                    _finish_item(manifest, started, (), error, 0.0)
                    record(item, reason, error)
                    continue
                worker = idle.pop(0)
                log.debug("processing %s (%s) in worker %d", item.key, reason, worker)
                pool.submit(worker, (str(item.input), item.key, str(item.output), str(out)))
                running[worker] = (item, reason, started, time.monotonic())
            if not running:
                if pending and not stopping:
                    log.warning("every worker process has exited; run the same command again to continue")
                break
            bar.set_postfix_str(f"{len(running)} running", refresh=True)
            for worker, reply in pool.wait():
                item, reason, started, t0 = running.pop(worker)
                outputs: tuple[str, ...] = ()
                if reply is None:
                    error = f"the worker process running it exited ({pool.exit_text(worker)})"
                    seconds = time.monotonic() - t0
                else:
                    written, error, trace, seconds = reply
                    if error is None:
                        try:
                            outputs = _check_outputs(item, written, out, stale.remove)
                        except Exception as exc:
                            error = error_message(exc)
                            trace = traceback.format_exc()
                    if error is not None:
                        log.debug("%s failed:\n%s", item.key, trace)
                _finish_item(manifest, started, outputs, error, seconds)
                record(item, reason, error)
        force = False
    except KeyboardInterrupt:
        outcome.interrupted = True
        log.warning("interrupted; run the same command again to continue")
    finally:
        pool.close(force=force)
    return outcome
