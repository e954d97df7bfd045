"""Long operations of the workbench (sync, rotation and re-key) on a thread of their own.

A page starts a job and is redirected to the job's page, which shows its progress
and reloads itself once a second until the job ends (a `<meta>` refresh: no
script needed). Progress comes from the same `Progress` objects the command line
draws on a terminal (`progress.SINK`). One job at a time: a second start while one
runs is shown the running one.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CliError
from ..progress import SINK


@dataclass
class Job:
    job_id: str
    kind: str  # sync | rotate | revoke | fetch
    started: float = field(default_factory=time.time)
    step: str = ""
    done: int = 0
    total: int | None = None
    finished: bool = False
    result: Any = None
    error: str | None = None
    back: str | None = None  # the page the job was started from, when not the start page

    def progress(self, label: str, done: int, total: int | None) -> None:
        self.step, self.done, self.total = label, done, total


class Jobs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._running: Job | None = None

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def running(self) -> Job | None:
        job = self._running
        return job if job is not None and not job.finished else None

    def start(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Run `work(job)` on a thread; returns the job (or the one already running)."""
        with self._lock:
            busy = self.running()
            if busy is not None:
                return busy
            job = Job(secrets.token_urlsafe(12), kind)
            self._jobs[job.job_id] = job
            self._running = job
        threading.Thread(target=self._run, args=(job, work), daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], Any]) -> None:
        SINK.set(job.progress)
        try:
            job.result = work(job)
        except CliError as exc:
            job.error = exc.message
        except Exception as exc:  # shown to the one person at this machine, as a type only
            job.error = f"internal error ({type(exc).__name__})"
            traceback.print_exc()
        finally:
            job.finished = True
