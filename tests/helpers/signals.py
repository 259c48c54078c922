"""SIGTERM in launcher tests: the caller's own handler, restored and told apart.

A launcher turns SIGTERM (what KFP sends a cancelled step) into a cancel, then puts
back the handler its caller had. ``SIG_DFL`` would not show a launcher that resets
instead of restoring, so the test installs a handler of its own first.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def callers_sigterm_handler() -> Iterator[object]:
    """Install a SIGTERM handler of the test's own for the block and yield it.

    The handler fails the test if a SIGTERM reaches it (the launcher's handler was
    not in place); the handler from before the block is put back afterwards.
    """

    def callers_handler(signum, frame):
        raise AssertionError("SIGTERM reached the caller's handler, not the launcher's")

    before = signal.signal(signal.SIGTERM, callers_handler)
    try:
        yield callers_handler
    finally:
        signal.signal(signal.SIGTERM, before)
