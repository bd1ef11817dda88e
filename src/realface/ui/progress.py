"""A job started from the page: progress, ETA and status line, cancel, and the thread it runs in."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realface.errors import Cancelled, RealFaceError

__all__ = ["Job", "JobRegistry", "run_in_thread"]

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class Job:
    """One run started from the page: a cancel flag and a progress record that the page polls.

    ``step_callback`` is given to the inversion; it raises :class:`~realface.errors.Cancelled` at the
    next step once :meth:`cancel` was called.
    """

    id: str = field(default_factory=lambda: secrets.token_hex(8))
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    item: int = 0
    items: int = 0
    item_name: str = ""
    step: int = 0
    steps: int = 0
    loss: float | None = None
    item_started: float = field(default_factory=time.monotonic)
    item_seconds: list[float] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled from the page")

    def begin_item(self, index: int, total: int, name: str) -> None:
        self.check()
        self.item, self.items, self.item_name = index, total, name
        self.step, self.steps, self.loss = 0, 0, None
        self.phase = "detecting faces"
        self.item_started = time.monotonic()

    def end_item(self) -> None:
        self.item_seconds.append(time.monotonic() - self.item_started)

    def step_callback(self, step: int, total: int, loss: Any) -> None:
        self.phase = "inverting"
        self.step, self.steps = step + 1, total
        self.loss = float(loss.mean())
        self.check()

    def eta(self) -> float | None:
        """Seconds left: the current image from its step rate, the others from the mean image time."""
        now = time.monotonic()
        current = None
        if self.steps and self.step:
            current = (now - self.item_started) / self.step * (self.steps - self.step)
        left_items = max(0, self.items - self.item)
        if self.item_seconds:
            per_item = sum(self.item_seconds) / len(self.item_seconds)
        elif current is not None:
            per_item = (now - self.item_started) + current
        else:
            return None
        return (current or 0.0) + left_items * per_item

    def status(self) -> str:
        parts = [f"**{self.phase.capitalize()}**"]
        if self.items:
            parts.append(f"image {self.item}/{self.items} ({self.item_name})")
        if self.steps:
            parts.append(f"step {self.step}/{self.steps}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        parts.append(f"elapsed {_duration(time.monotonic() - self.started)}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        if self.cancelled:
            parts.append("cancelling…")
        return " · ".join(parts)


class JobRegistry:
    """The jobs the page has started, by id, so that the Cancel button finds the running one."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new(self) -> Job:
        job = Job()
        with self._lock:
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id or "")

    def finish(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` in a daemon thread; the returned dict gets ``result`` or ``error`` when it ends."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the page, never re-raised in a thread
            if not isinstance(exc, (Cancelled, RealFaceError)):
                log.exception("job failed")
            box["error"] = exc
        if "result" not in box and "error" not in box:  # never a job that ends with neither
            box["error"] = RuntimeError("the job stopped without a result")

    thread = threading.Thread(target=target, name="realface-job", daemon=True)
    thread.start()
    return thread, box
