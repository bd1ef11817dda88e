"""Worker processes for catalogue runs: ``realface apply --workers N``.

On a CPU one inversion does not use many cores well; N single-threaded processes, each inverting its
own image, finish more images per hour than one process with N threads. The batch runner
(:func:`realface.batch.run_batch`) stays in charge: the parent process plans the batch, holds the
output folder's lock and is the only writer of ``manifest.jsonl``; it hands one item at a time to an
idle worker and records the outcome the worker sends back. A worker writes its outputs atomically,
as the in-process job does, so a killed worker or Ctrl-C leaves the folder resumable: the items in
flight keep their ``started`` records and are run again by the next run.

A worker is started with the ``spawn`` method (a fresh interpreter, nothing inherited from the
parent's threads), ignores Ctrl-C (the parent handles it and stops the workers), runs torch with
``threads`` threads, calls the job's ``setup`` once (loading its networks) and then serves items until
told to stop. On Linux it is killed when the parent dies, so a ``kill -9`` of the run leaves no
worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realface.errors import RealFaceError

if TYPE_CHECKING:
    from realface.batch import BatchSummary, ProcessFn
    from realface.pipeline import ApplyConfig

__all__ = [
    "WorkerJob",
    "WorkerPool",
    "catalogue_setup",
    "default_apply_workers",
    "available_memory",
    "worker_memory",
    "run_catalogue_workers",
    "usable_cpus",
]

log = logging.getLogger(__name__)

_STOP_SECONDS = 10.0  # how long a worker told to stop may take before it is killed


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


ACTIVATION_BYTES_1024 = int(2.5 * 2**30)
"""Memory of one face's inversion step at 1024² (generator forward and backward, LPIPS at 256:
measured 2.4 GiB by ``benchmarks/bench_generator.py``); it scales with the number of pixels."""


def worker_memory(job_modules: Sequence[Any], resolution: int, batch_size: int) -> int:
    """Estimated peak bytes of one worker: the parameters and buffers of ``job_modules`` plus the
    activations of an inversion batch of ``batch_size`` faces at ``resolution``."""
    weights = 0
    for module in job_modules:
        if module is None:
            continue
        weights += sum(t.numel() * t.element_size() for t in module.parameters())
        weights += sum(t.numel() * t.element_size() for t in module.buffers())
    return weights + int(ACTIVATION_BYTES_1024 * (resolution / 1024) ** 2 * batch_size)


def default_apply_workers(device: Any, per_worker_bytes: int | None = None) -> int:
    """``apply``'s default ``--workers``: one per usable CPU on the CPU, one on a GPU.

    With ``per_worker_bytes`` (:func:`worker_memory`), the CPU count is capped so that the workers
    fit in 80 % of the available memory (at least 1); the cap is logged.
    """
    if getattr(device, "type", str(device)) != "cpu":
        return 1
    n = usable_cpus()
    free = available_memory()
    if per_worker_bytes and free is not None:
        fit = max(1, int(free * 0.8) // per_worker_bytes)
        if fit < n:
            log.info(
                "using %d worker(s), not %d (one per CPU): each needs about %.1f GiB and %.1f GiB is "
                "available; --workers N overrides",
                fit,
                n,
                per_worker_bytes / 2**30,
                free / 2**30,
            )
            n = fit
    return n


@dataclass(frozen=True)
class WorkerJob:
    """A batch job run in worker processes (:func:`realface.batch.run_batch` accepts it as ``process``).

    Attributes:
        setup: called once in each worker (it must be picklable: a module-level function or a
            :func:`functools.partial` of one); returns the :data:`realface.batch.ProcessFn` that the
            worker then runs for each item it is given. An exception from it stops the batch before
            any item starts, with its message.
        workers: the number of worker processes (at most one per item to run). With 1, or a single
            item to run, ``setup`` is called in the calling process and the items run there.
        threads: torch threads in each worker (default 1).
    """

    setup: Callable[[], ProcessFn]
    workers: int
    threads: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads < 1:
            raise RealFaceError(
                f"workers and threads must be at least 1 (got workers={self.workers}, threads={self.threads})"
            )


# --- the worker side ----------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent exits (and exit now if it already has)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(
    setup: Callable[[], ProcessFn], conn: multiprocessing.connection.Connection, threads: int, parent: int
) -> None:
    """A worker's life: set up the job, then run the items the parent sends until it sends ``None``.

    Replies: ``("ready",)`` or ``("setup failed", message, traceback)`` once; then for each item
    ``(outputs, error, traceback, seconds)`` with ``error`` None on success.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(parent)
    import torch

    from realface.batch import ItemContext, error_message
    from realface.utils.memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    try:
        process = setup()
    except BaseException as exc:
        conn.send(("setup failed", error_message(exc), traceback.format_exc()))
        return
    conn.send(("ready",))
    item_log = logging.getLogger("realface.batch")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        source, key, output, outdir = task
        ctx = ItemContext(input=Path(source), key=key, output=Path(output), outdir=Path(outdir), log=item_log)
        t0 = time.monotonic()
        try:
            written = [str(p) for p in process(ctx.input, ctx)]
            reply: tuple[Any, ...] = (written, None, "", time.monotonic() - t0)
        except Exception as exc:
            reply = ([], error_message(exc), traceback.format_exc(), time.monotonic() - t0)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


# --- the parent side ----------------------------------------------------------------------------------


class WorkerPool:
    """N worker processes, each serving one item at a time over its own pipe.

    :meth:`start` spawns them and waits until every one has set up its job; :meth:`submit` hands an idle
    worker a task; :meth:`wait` blocks until at least one busy worker answers or dies; :meth:`close`
    stops them (politely, then by force). Worker ids are ``0 .. n-1``.
    """

    def __init__(self, setup: Callable[[], ProcessFn], n: int, threads: int = 1) -> None:
        self.setup, self.n, self.threads = setup, n, threads
        self.procs: list[Any] = []
        self.conns: list[multiprocessing.connection.Connection] = []
        self.busy: set[int] = set()
        self.dead: set[int] = set()

    def start(self) -> None:
        """Spawn the workers and wait for each to set up its job.

        Raises:
            RealFaceError: a worker's setup failed (its message) or a worker died while setting up.
        """
        ctx = multiprocessing.get_context("spawn")
        for _ in range(self.n):
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=_worker_main,
                args=(self.setup, child_end, self.threads, os.getpid()),
                daemon=True,
                name="realface-worker",
            )
            proc.start()
            child_end.close()
            self.procs.append(proc)
            self.conns.append(parent_end)
        for i, conn in enumerate(self.conns):
            try:
                reply = conn.recv()
            except (EOFError, OSError):
                self.procs[i].join(timeout=5)
                raise RealFaceError(
                    f"a worker process exited while loading the job ({self.exit_text(i)})"
                ) from None
            if reply[0] != "ready":
                log.debug("worker setup failed:\n%s", reply[2])
                raise RealFaceError(reply[1])

    def idle(self) -> list[int]:
        """The workers alive and waiting for a task."""
        return [i for i in range(len(self.procs)) if i not in self.busy and i not in self.dead]

    @property
    def alive(self) -> int:
        return len(self.procs) - len(self.dead)

    def submit(self, worker: int, task: tuple[str, str, str, str]) -> None:
        """Give ``worker`` the task ``(input, key, output, outdir)``."""
        self.busy.add(worker)
        try:
            self.conns[worker].send(task)
        except (BrokenPipeError, OSError):
            pass  # it died: wait() reports it

    def wait(self) -> list[tuple[int, tuple[Any, ...] | None]]:
        """Block until busy workers answer: ``(worker, reply)`` for each, reply ``None`` when the
        worker died instead (it is not given tasks any more)."""
        busy = sorted(self.busy)
        if not busy:
            return []
        handles: list[Any] = [self.conns[i] for i in busy] + [self.procs[i].sentinel for i in busy]
        ready = set(multiprocessing.connection.wait(handles))
        events: list[tuple[int, tuple[Any, ...] | None]] = []
        for i in busy:
            conn, proc = self.conns[i], self.procs[i]
            if conn not in ready and proc.sentinel not in ready:
                continue
            reply: tuple[Any, ...] | None = None
            try:
                if conn.poll():
                    reply = conn.recv()
            except (EOFError, OSError):
                reply = None
            self.busy.discard(i)
            if reply is None:
                proc.join(timeout=5)
                self.dead.add(i)
            events.append((i, reply))
        return events

    def exit_text(self, worker: int) -> str:
        """How a worker ended, for messages: ``"killed by SIGKILL"``, ``"exit status 1"``."""
        code = self.procs[worker].exitcode
        if code is None:
            return "still running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit status {code}"

    def close(self, force: bool = False) -> None:
        """Stop every worker: tell idle ones to stop and wait a little, then kill what is left. With
        ``force`` (Ctrl-C, an error) they are killed at once; their unfinished writes are only
        temporary files, which the next run removes."""
        for i, (proc, conn) in enumerate(zip(self.procs, self.conns, strict=True)):
            if not force and i not in self.busy and proc.is_alive():
                with contextlib.suppress(OSError):
                    conn.send(None)
        deadline = time.monotonic() + (0.0 if force else _STOP_SECONDS)
        for proc in self.procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()


# --- the catalogue job ----------------------------------------------------------------------------------


def _run_file(job: Any, path: Path, ctx: Any) -> list[Path]:
    return job.run_file(path, ctx.output)


def _load_catalogue_job(
    real: str, rendering: str | None, lpips_vgg: str | None, config: ApplyConfig, device: str
) -> ProcessFn:
    from realface.checkpoints import load_generator
    from realface.nn.lpips import load_lpips_vgg
    from realface.pipeline import RealFace
    from realface.utils.device import resolve_device

    dev = resolve_device(device)
    G_real = load_generator(real, device=dev)
    G_rendering = load_generator(rendering, device=dev) if rendering is not None else None
    lpips = load_lpips_vgg(device=dev, vgg_path=None if lpips_vgg is None else Path(lpips_vgg))
    return functools.partial(_run_file, RealFace(G_real, G_rendering, lpips, config, device=dev))


def catalogue_setup(
    real: str | os.PathLike,
    rendering: str | os.PathLike | None,
    lpips_vgg: str | os.PathLike | None,
    config: ApplyConfig,
    device: str,
) -> Callable[[], ProcessFn]:
    """The :attr:`WorkerJob.setup` of ``realface apply``: each worker loads G_real (a file or a
    weights id), G_rendering (None: the baseline mode) and LPIPS-VGG onto ``device`` and runs
    :meth:`realface.pipeline.RealFace.run_file` on each image."""
    return functools.partial(
        _load_catalogue_job,
        str(real),
        None if rendering is None else str(rendering),
        None if lpips_vgg is None else str(lpips_vgg),
        config,
        device,
    )


def run_catalogue_workers(
    setup: Callable[[], ProcessFn],
    config: ApplyConfig,
    inputs: Sequence[str | os.PathLike],
    outdir: str | os.PathLike,
    info: dict,
    *,
    workers: int,
    suffix: str | None = None,
    progress: bool = True,
    stop_on_error: bool = False,
    on_plan: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """:func:`realface.pipeline.run_catalogue` with the images run in ``workers`` single-threaded
    processes, each made by ``setup`` (:func:`catalogue_setup`) with ``config``; the same plan,
    manifest, ``config.json`` and summary, so a run with any number of workers resumes another."""
    import json

    from realface.batch import hash_config, run_batch
    from realface.pipeline import _face_extras, plan_catalogue

    out = Path(outdir)
    items, roots = plan_catalogue(inputs, out, config, suffix)
    return run_batch(
        items,
        WorkerJob(setup, workers),
        out,
        config_hash=hash_config(info),
        roots=roots,
        suffix=suffix,
        progress=progress,
        stop_on_error=stop_on_error,
        on_plan=on_plan,
        extras=_face_extras(config),
        files={"config.json": json.dumps(info, indent=2, sort_keys=True) + "\n"},
    )
