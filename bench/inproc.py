"""The in-process measurements, each in a fresh interpreter of its own.

    python -m bench.inproc replay OUT
    python -m bench.inproc profile OUT --events N --customers N --seed N --end ISO
                                       --limit N [--redis-url URL --namespace NS]

``profile`` regenerates the run's mix (same spec, seed and end: the same events) and
profiles its first ``--limit`` events.

The benchmark's own process holds the whole event mix and the CDNOW history; Python's
garbage collector walks that heap too, which slowed the hot path measured in it by up to
2x. A fresh process holds what a worker or ``tierstream replay`` would hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc")
    parser.add_argument("what", choices=["replay", "profile"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20_240_601)
    parser.add_argument("--end")
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--redis-url")
    parser.add_argument("--namespace")
    args = parser.parse_args(argv)
    if args.what == "replay":
        from bench.phases import cdnow_events, replay_speed

        cdnow_events()  # reading the file is not part of the replay's time
        result = replay_speed()
    else:
        from bench.mix import MixSpec, generate
        from bench.profile import hot_path

        spec = MixSpec(events=args.events, customers=args.customers, seed=args.seed)
        mix = generate(spec, datetime.fromisoformat(args.end))
        result = hot_path(mix.events[: args.limit], args.redis_url, args.namespace)
    args.out.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
