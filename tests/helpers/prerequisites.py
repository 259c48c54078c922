"""What ``make test`` installs before the tests run: missing is a skip here, a failure in CI.

``make test`` (the README's command, and CI's: ``.ci/run``) installs checkov in its own
venv, Debian's ``dataset-fashion-mnist`` and, through ``images/engine.sh``, a container
engine; CI runs it as root with apt and PyPI reachable. So under ``CI=true`` a missing
one is a broken install and its tests fail. On a developer's machine without root the
tests skip instead, and the skip says what is missing and how to get it (``-ra``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

# images/engine.sh: no engine, and none can be installed here (not root, or no apt)
NO_ENGINE_HERE = 3
# images/engine.sh: installing the engine failed, or the engine it has does not work
ENGINE_BROKEN = 4


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str, how: str) -> NoReturn:
    """``what`` is not installed: fail under CI, else skip saying ``how`` to get it."""
    if in_ci():
        pytest.fail(
            f"{what} is missing under CI=true, where `make test` installs it ({how}): "
            "a broken install, not a reason to skip",
            pytrace=False,
        )
    pytest.skip(f"{what} is missing ({how})")
