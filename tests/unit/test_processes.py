"""The --processes supervisor: one child failing stops the rest and sets the exit status."""

from __future__ import annotations

import sys
import time

from tierstream.processes import supervise


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_all_children_ending_well_is_success() -> None:
    assert supervise([child("pass"), child("import time; time.sleep(0.3)")]) == 0


def test_a_failing_child_stops_the_others_and_its_status_is_returned() -> None:
    started = time.monotonic()
    status = supervise([child("import time; time.sleep(60)"), child("raise SystemExit(70)")])
    assert status == 70
    assert time.monotonic() - started < 30  # the sleeper was stopped, not waited for
