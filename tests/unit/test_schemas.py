from __future__ import annotations

import pytest

from tierstream.schemas import MODELS, SCHEMA_DIR, render


@pytest.mark.parametrize("name", sorted(MODELS))
def test_published_schemas_are_current(name):
    assert (SCHEMA_DIR / name).read_text() == render(MODELS[name]), "run `make schemas`"
