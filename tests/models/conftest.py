from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

FEATURES = ("a", "b", "c", "d", "e")
CENTRES = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [6.0, 6.0, 0.0, 0.0, 3.0],
        [0.0, 6.0, 6.0, 1.0, 0.0],
        [6.0, 0.0, 6.0, 5.0, 6.0],
    ]
)


def labelled_blobs(
    n: int, seed: int = 0, spread: float = 0.5
) -> tuple[list[dict[str, float]], list[int]]:
    """``n`` points around four well separated centres, as river-style dicts, and their centre."""
    rng = np.random.default_rng(seed)
    which = rng.integers(len(CENTRES), size=n)
    points = CENTRES[which] + rng.normal(scale=spread, size=(n, len(FEATURES)))
    xs = [dict(zip(FEATURES, map(float, row), strict=True)) for row in points]
    return xs, [int(w) for w in which]


def blobs(n: int, seed: int = 0, spread: float = 0.5) -> list[dict[str, float]]:
    return labelled_blobs(n, seed, spread)[0]


@pytest.fixture(scope="session")
def make_blobs() -> Callable[..., list[dict[str, float]]]:
    return blobs


@pytest.fixture(scope="session")
def make_labelled_blobs() -> Callable[..., tuple[list[dict[str, float]], list[int]]]:
    return labelled_blobs


@pytest.fixture(scope="session")
def stream() -> list[dict[str, float]]:
    return blobs(600)
