"""Every test under tests/integration carries the ``integration`` marker (setup.cfg), so
``-m integration`` and ``-m 'not integration'`` select them as the README says; the
slow ones keep their ``slow`` marker too."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
