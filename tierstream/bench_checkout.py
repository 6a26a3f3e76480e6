"""`tierstream bench` from a checkout: the benchmark harness (bench/) lives in the
repository beside the package and is not installed with it (the wheel ships the product
only). An editable install or a run from the checkout finds it there."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

NOT_A_CHECKOUT = (
    "tierstream bench runs from a checkout of the repository (bench/ is not installed "
    "with the package): `make bench` or `python -m bench.run` there"
)


CHECKOUT = Path(__file__).resolve().parent.parent  # where the package's source lies


def bench_main() -> Callable[[list[str]], int] | None:
    """``bench.run.main``, or None when no checkout holds bench/ (say NOT_A_CHECKOUT)."""
    checkout = CHECKOUT
    if (checkout / "bench" / "run.py").is_file() and str(checkout) not in sys.path:
        # A console script's path holds its bin/ directory, not the checkout.
        sys.path.append(str(checkout))
    try:
        run = importlib.import_module("bench.run")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.run"):
            raise
        return None
    main: Callable[[list[str]], int] = run.main
    return main
