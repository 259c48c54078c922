"""What every launcher shares about the job it runs: a fresh name, the outcome, the error
(:class:`LaunchError`), and cancellation by SIGTERM (what KFP sends a cancelled step).
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from dataclasses import dataclass

from tfopt.errors import TfoptError


class LaunchError(TfoptError, RuntimeError):
    """The remote training job failed, timed out or was cancelled."""


@dataclass
class JobOutcome:
    name: str
    succeeded: bool
    reason: str
    seconds: float
    replica_statuses: dict


class Cancelled(BaseException):
    """The launcher got SIGTERM (see :func:`sigterm_raises`)."""


@contextlib.contextmanager
def sigterm_raises():
    """Turn SIGTERM (what KFP sends a cancelled step) into an exception we can clean up on."""

    def handler(signum, frame):
        raise Cancelled(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def job_name(prefix: str = "tfopt-train") -> str:
    """A fresh DNS-label job name (a retried step never collides with an old job)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
