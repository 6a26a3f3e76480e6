"""The calibration/holdout figures of docs/clv.md are what the code computes today."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierstream.clv_validation import markdown, validate

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "clv.md"


def test_cdnow_holdout_figures_match_the_docs():
    result = validate()
    assert result.holdout_days == 273 and str(result.calibration_end) == "1997-09-30"
    assert sum(g.customers for g in result.groups) == 23_570
    # BG/NBD on purchase days: within 15% of the actual total, and closer for frequent buyers.
    assert abs(result.predicted / result.actual - 1) < 0.15
    top = result.groups[-1]
    assert top.group == "7+" and abs(top.predicted / top.actual - 1) < 0.05
    assert markdown(result) in DOCS.read_text(encoding="utf-8"), "docs/clv.md is stale"
