"""The markers select what the README says: ``-m integration`` is tests/integration."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# every integration test file and one unit file: what each marker expression picks of them
PATHS = ("tests/integration", "tests/unit/test_labels.py")


def _collected(*args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + [*args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_integration_marker_selects_tests_integration_only():
    picked = _collected("-m", "integration")
    rest = _collected("-m", "not integration")
    assert picked and all(n.startswith("tests/integration/") for n in picked), picked
    assert rest and all(n.startswith("tests/unit/test_labels.py::") for n in rest), rest
    files = {n.split("::")[0] for n in picked}
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "tests/integration").glob("test_*.py")}
    assert files == on_disk  # every file's tests, the slow ones with the others
