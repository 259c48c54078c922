"""Event-driven waits for tests that talk to local servers.

CI runs the suite two workers at a time on two cores next to other TF processes, so
anything that "should take a second" can take a minute there. Tests wait for the
condition they need (never a fixed sleep) up to a generous deadline, and a miss fails
with what was awaited and the last value seen, not with a bare ``assert False``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough for a loaded 2-core CI machine; a hang still fails well inside the
# per-test timeout (setup.cfg's ``timeout``).
LOADED_DEADLINE_S = 120.0


def wait_until(
    probe: Callable[[], T],
    what: str,
    timeout_s: float = LOADED_DEADLINE_S,
    interval_s: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something truthy; return that value.

    Raises:
        AssertionError: ``timeout_s`` passed; the message names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what} (last value: {value!r})"
            )
        time.sleep(interval_s)
