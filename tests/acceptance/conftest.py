"""The acceptance tier: the CDNOW reference runs (the results against independent
computations) and the installed wheel. Every test here is marked ``acceptance``
automatically; `make test-acceptance` runs them, `make test-unit` leaves them out.

The few acceptance runs that need Kafka or Redis stay beside their fixtures in
tests/integration/ and carry the ``acceptance`` marker there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.acceptance)
