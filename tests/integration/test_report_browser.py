"""The KPI report in a real browser: `tierstream report` opens in headless chromium with
every plot drawn (decoded PNGs with a size), and its tables hold every tier and segment.

Same browser set-up as tests/integration/test_dashboard.py (Debian's chromium through
playwright; skipped, saying so, without them). Saves a screenshot to out/report.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.test_dashboard import browser  # noqa: F401 - the shared fixture
from tierstream.cli import app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_report_opens_with_its_plots_drawn(browser, tmp_path):  # noqa: F811
    # A small history in the csv format: the report is about rendering here, the KPI
    # figures themselves are checked against pandas in tests/acceptance/test_kpis_cdnow.py.
    history = tmp_path / "history.csv"
    rows = ["event_id,customer_id,occurred_at,amount,currency"]
    for n in range(240):
        for k in range(1 + n % 4):
            month = 1 + (n + k * 2) % 6
            rows.append(
                f"e{n}-{k},c{n:03d},1998-0{month}-{10 + k:02d}T12:00:00Z,{5 + n % 50}.50,USD"
            )
    history.write_text("\n".join(rows) + "\n")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--out",
            str(out),
            "--replay",
            str(history),
            "--format",
            "csv",
            "--as-of",
            "1998-07-01",
        ],
    )
    assert result.exit_code == 0, result.output
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(out.as_uri())
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])"
        )
        assert len(images) == 2  # tier and RFM segment (no behaviour model in a replay)
        assert all(done and w > 300 and h > 100 for done, w, h in images), images
        headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
        assert headings == ["Value tier", "RFM segment", "Behaviour segment"]
        first_cells = page.eval_on_selector_all(
            "table tbody tr td:first-child", "els => els.map(e => e.textContent)"
        )
        assert "all" in first_cells and "C" in first_cells
        (ROOT / "out").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "out" / "report.png"), full_page=True)
    finally:
        page.close()
