"""SIGTERM in launcher tests: the caller's own handler, restored and told apart.

A launcher turns SIGTERM (what KFP sends a cancelled step) into a cancel, then puts
back the handler its caller had. ``SIG_DFL`` would not show a launcher that resets
instead of restoring, so the test installs a handler of its own first. The test sends
the signal when the launcher is waiting on its job, never after a fixed delay: on a
loaded machine a timer can fire before the launcher's handler is in, and SIGTERM
under ``SIG_DFL`` ends the pytest(-xdist) worker itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator


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


@contextlib.contextmanager
def sigterm_when(ready: Callable[[], bool], what: str) -> Iterator[threading.Event]:
    """In the block, send this process SIGTERM once ``ready()`` holds; yield "sent".

    ``ready`` names the event the signal must follow (e.g. the launcher's handler is in
    and it polls its job). The block ending stops the watcher; a test asserting on the
    launcher's reaction should also assert ``sent`` (``what`` goes into the message).
    """
    sent, stop = threading.Event(), threading.Event()

    def watch():
        while not stop.wait(0.01):
            if ready():
                os.kill(os.getpid(), signal.SIGTERM)
                sent.set()
                return

    watcher = threading.Thread(target=watch, name=f"sigterm when {what}", daemon=True)
    watcher.start()
    try:
        yield sent
    finally:
        stop.set()
        watcher.join()
