"""A long generated history on disk, for the backfill measurement (docs/benchmarks.md).

``python -m bench.history OUT.jsonl[.gz] --events 5000000`` writes the benchmark mix
(bench/mix.py) in consecutive slices of ``--slice`` events, each generated with its own
seed and event-id prefix and dated in its own stretch of time, one after the other, so
that the file is one history ending at ``--end`` while never more than one slice is in
memory. Customers are shared across slices (same ids), as in a real shop.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from datetime import UTC, datetime, timedelta
from typing import IO

from bench.mix import MixSpec, generate
from streams.producer import event_json


def write_history(
    out: IO[bytes], events: int, *, slice_events: int, customers: int, days: float, end: datetime
) -> int:
    slices = max(1, -(-events // slice_events))
    span = days / slices
    written = 0
    for index in range(slices):
        size = min(slice_events, events - written)
        spec = MixSpec(events=size, customers=customers, days=span, seed=20_240_601 + index)
        slice_end = end - timedelta(days=span * (slices - 1 - index))
        mix = generate(spec, slice_end, id_prefix=f"h{index:03d}-")
        out.writelines(event_json(event) + b"\n" for event in mix.events)
        written += len(mix.events)
        print(f"slice {index + 1}/{slices}: {written:,} events", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--slice", type=int, default=250_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--end", default="2026-11-01T00:00:00+00:00")
    args = parser.parse_args(argv)
    end = datetime.fromisoformat(args.end).astimezone(UTC)
    opener = gzip.open if args.out.endswith(".gz") else open
    with opener(args.out, "wb") as out:  # type: ignore[operator]
        written = write_history(
            out,
            args.events,
            slice_events=args.slice,
            customers=args.customers,
            days=args.days,
            end=end,
        )
    print(f"{written:,} events written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
