"""One word per concept: "segment" is the RFM rule segment, "behaviour" the learned cluster.

The learned concept's former names stay working where users meet them (the ``segments``
command, ``--segments``, TIERSTREAM_LEARN_SEGMENTS, TIERSTREAM_SEGMENTS_CHECK_SECONDS) and
must not come back anywhere else in the product code (docs/architecture.md, "Words").
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tierstream.cli import app
from tierstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("scoring", "models", "streams", "tierstream", "bench")

# Names the learned concept had before it was called behaviour.
RETIRED = {
    "OnlineSegmenter",
    "Segment",
    "SegmentSnapshot",
    "SegmentDrift",
    "SegmentSums",
    "LearnedSegment",
    "SegmentModel",
    "SegmentsOption",
    "describe_segments",
    "segment_snapshot",
    "segment_snapshot_in_force",
    "fill_segment_table",
    "refresh_segments",
    "learn_segments",
    "segments_check_seconds",
    "published_segments",
    "_adopt_published_segments",
    "segment_learning",
    "tierstream.segments",
    "streams.segment_learning",
}
# Modules about the learned concept only: no identifier of theirs names a segment.
LEARNED_ONLY = (
    "models/clustering.py",
    "models/evaluation.py",
    "models/learning.py",
    "models/naming.py",
    "models/snapshot.py",
    "streams/learner.py",
    "streams/behaviour_learning.py",
    "tierstream/behaviours.py",
    "tierstream/cli_learning.py",
    "tierstream/published.py",
    "bench/learning.py",
)
# Compatibility: a field of an API body kept under its first name beside behaviour_id.
SHIMS = {("tierstream/api_models.py", "segment_id")}


def identifiers(tree: ast.AST) -> set[str]:
    """Every name the code defines or uses (strings and comments are not names)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg is not None:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update([node.name, *node.name.split(".")])
            if node.asname:
                names.add(node.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module, *node.module.split(".")])
    return names


def product_modules() -> list[Path]:
    return sorted(p for d in PRODUCT for p in (ROOT / d).rglob("*.py"))


def test_retired_names_of_the_learned_concept_do_not_come_back() -> None:
    found = []
    for path in product_modules():
        name = path.relative_to(ROOT).as_posix()
        used = identifiers(ast.parse(path.read_text(encoding="utf-8")))
        found += [f"{name}: {n}" for n in sorted(used & RETIRED)]
        if name in LEARNED_ONLY:
            found += [f"{name}: {n}" for n in sorted(used) if "segment" in n.lower()]
        found += [
            f"{name}: segment_id" for n in used if n == "segment_id" and (name, n) not in SHIMS
        ]
    assert not found, "the learned concept is called behaviour:\n" + "\n".join(found)


def test_the_old_module_paths_are_gone() -> None:
    assert not (ROOT / "tierstream" / "segments.py").exists()
    assert not (ROOT / "streams" / "segment_learning.py").exists()


# --- the compatibility names --------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "learn", "check"),
    [
        ({}, False, 5.0),
        ({"TIERSTREAM_LEARN_SEGMENTS": "true", "TIERSTREAM_SEGMENTS_CHECK_SECONDS": "2"}, True, 2),
        ({"TIERSTREAM_LEARN_BEHAVIOURS": "1", "TIERSTREAM_BEHAVIOURS_CHECK_SECONDS": "3"}, True, 3),
        (  # both given: the new name wins
            {
                "TIERSTREAM_LEARN_SEGMENTS": "true",
                "TIERSTREAM_LEARN_BEHAVIOURS": "false",
                "TIERSTREAM_SEGMENTS_CHECK_SECONDS": "2",
                "TIERSTREAM_BEHAVIOURS_CHECK_SECONDS": "3",
            },
            False,
            3,
        ),
    ],
    ids=["defaults", "old-names", "new-names", "both"],
)
def test_learning_settings_take_the_new_and_the_old_names(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], learn: bool, check: float
) -> None:
    for name in (
        "TIERSTREAM_LEARN_SEGMENTS",
        "TIERSTREAM_LEARN_BEHAVIOURS",
        "TIERSTREAM_SEGMENTS_CHECK_SECONDS",
        "TIERSTREAM_BEHAVIOURS_CHECK_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.learn_behaviours, settings.behaviours_check_seconds) == (learn, check)


def test_learning_settings_take_their_field_names() -> None:
    settings = Settings(learn_behaviours=True, behaviours_check_seconds=7)
    assert (settings.learn_behaviours, settings.behaviours_check_seconds) == (True, 7)


def options(command: str) -> list[tuple[str, ...]]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return [tuple(p.opts) for p in group.commands[command].params]


def test_segments_is_the_behaviours_command_under_its_old_name() -> None:
    assert options("segments") == options("behaviours")
    for command in ("replay", "report", "review"):
        assert ("--behaviours", "--segments") in options(command), command


def history(tmp_path: Path) -> Path:
    rng = random.Random(3)
    lines = [
        {
            "event_id": f"e{i}",
            "customer_id": f"c{i % 40}",
            "occurred_at": f"2025-01-{1 + i % 28:02d}T10:00:00+00:00",
            "amount": f"{rng.uniform(5, 200):.2f}",
            "currency": "USD",
        }
        for i in range(160)
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_both_names_learn_the_same_model_and_replay_with_it(tmp_path: Path) -> None:
    source = str(history(tmp_path))
    learn = ["--replay", source, "--format", "jsonl", "--as-of", "2025-02-01", "--k", "3"]
    new = run("behaviours", *learn, "--json", "--save", str(tmp_path / "new.json"))
    old = run("segments", *learn, "--json", "--save", str(tmp_path / "old.json"))
    assert new == old and len(json.loads(new)["segments"]) == 3
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()

    outputs = []
    for option in ("--behaviours", "--segments"):
        changes = tmp_path / f"changes{option}.jsonl"
        base = [source, "--format", "jsonl", "--as-of", "2025-02-01", "--quiet"]
        run("replay", *base, option, str(tmp_path / "new.json"), "--changes-out", str(changes))
        rows = [json.loads(line) for line in changes.read_text().splitlines()]
        outputs.append([{k: v for k, v in r.items() if k != "emitted_at"} for r in rows])
    assert outputs[0] == outputs[1]
    assert {r["new_behaviour"] for r in outputs[0]} - {None}  # behaviours were assigned


def test_kpis_name_the_behaviour_model_version_and_keep_the_old_field() -> None:
    from datetime import UTC, datetime

    from models.snapshot import Behaviour, BehaviourSnapshot
    from scoring.engine import Scorer
    from tierstream.kpis import Population, kpi_table
    from tierstream.settings import load_scoring_config

    model = BehaviourSnapshot(
        version=4,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        feature_names=("a",),
        mean=(0.0,),
        scale=(1.0,),
        behaviours=(Behaviour(0, "only", (0.0,), 1.0, 1.0),),
    )
    people = Population(datetime(2025, 1, 1, tzinfo=UTC), 365, [], 0, model, None)
    table = kpi_table(Scorer(load_scoring_config(None)), people, "behaviour")
    assert table["behaviour_model_version"] == table["segment_model_version"] == 4


def test_a_bad_value_under_the_old_name_is_one_line_naming_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TIERSTREAM_LEARN_BEHAVIOURS", raising=False)
    monkeypatch.setenv("TIERSTREAM_LEARN_SEGMENTS", "maybe")
    result = CliRunner().invoke(app, ["export", "--state-out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 1 and "TIERSTREAM_LEARN_BEHAVIOURS (or TIERSTREAM_LEARN_SEGMENTS)" in lines[0]
    )
