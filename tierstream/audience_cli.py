"""``tierstream audience``: export an audience's members, rebuild or check the sets.

    tierstream audience Gold --out gold.jsonl          a tier (or an RFM segment) by name
    tierstream audience "Big spenders" --kind behaviour --out big.jsonl
    tierstream audience --rebuild                      sets from the states (workers stopped)
    tierstream audience --check                        sets against a scan of the states

A store written before audiences were kept has no membership sets: run ``--rebuild`` once
with the workers stopped; every commit keeps them exact from then on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tierstream.cli_input import fail, load_settings

KINDS = ("auto", "tier", "segment", "behaviour")


def register(app: typer.Typer) -> None:
    app.command("audience")(audience_command)


def resolve(name: str, kind: str, tiers: list[str], segments: list[str]) -> str:
    """The audience kind of ``name``: the one given, else a tier's or segment's name."""
    if kind != "auto":
        return kind
    found = [k for k, names in (("tier", tiers), ("segment", segments)) if name in names]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{name!r} names a tier and a segment: pass --kind tier or segment")
    raise ValueError(
        f"{name!r} is no tier ({', '.join(tiers)}) or segment of the scoring config: "
        "pass --kind behaviour for a behaviour segment's label"
    )


def audience_command(
    name: Annotated[str | None, typer.Argument(help="Tier, segment or behaviour label")] = None,
    out: Annotated[Path | None, typer.Option(help="JSONL file of the members")] = None,
    kind: Annotated[str, typer.Option(help="auto | tier | segment | behaviour")] = "auto",
    rebuild: Annotated[
        bool, typer.Option(help="Recompute every membership set from the states")
    ] = False,
    check: Annotated[
        bool, typer.Option(help="Compare the membership sets with a scan of the states")
    ] = False,
) -> None:
    """Export the members of one audience (one {"customer_id": ...} line each), or
    rebuild or check the membership sets."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from scoring.engine import Scorer  # noqa: PLC0415
    from tierstream.api_common import segment_names, tier_names  # noqa: PLC0415
    from tierstream.audiences import differences, members  # noqa: PLC0415
    from tierstream.stores.from_settings import redis_store  # noqa: PLC0415 - Redis when used

    if kind not in KINDS:
        fail(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not rebuild and not check and (name is None or out is None):
        fail("name an audience and --out FILE.jsonl (or pass --rebuild or --check)")
    settings = load_settings()
    store = redis_store(settings)
    try:
        if rebuild:
            seen = store.rebuild_audiences()
            print(json.dumps({"rebuilt": True, "customers": seen}))
        if check:
            problems = differences(store)
            for line in problems:
                print(line, file=sys.stderr)
            print(json.dumps({"checked": True, "differences": len(problems)}))
            if problems:
                raise typer.Exit(1)
        if name is None or out is None:
            return
        from tierstream.config_store import config_in_force  # noqa: PLC0415

        scorer = Scorer(config_in_force(settings, store)[0])  # the published version's names
        try:
            resolved = resolve(name, kind, tier_names(scorer), segment_names(scorer))
        except ValueError as exc:
            fail(str(exc))
        size = store.audience_size(resolved, name)
        written = 0
        partial = out.with_name(out.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as handle:
                for customer_id in members(store, resolved, name):
                    handle.write(json.dumps({"customer_id": customer_id}, ensure_ascii=False))
                    handle.write("\n")
                    written += 1
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
        os.replace(partial, out)  # a complete file or none
        summary = {"kind": resolved, "name": name, "size": size, "written": written}
        print(json.dumps(summary, ensure_ascii=False))
    except RedisError as exc:
        fail(f"cannot read the state store (Redis): {exc}")
    finally:
        store.close()
