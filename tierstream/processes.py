"""``tierstream worker --processes N``: N worker processes under one supervisor.

Python runs one core's worth of computation per process, so a machine's cores are used by
running one worker per core. They join the same consumer group, so Kafka divides the
partitions between them, and Redis fences each shard to its one owner. This supervisor
only starts them, forwards SIGINT/SIGTERM, and exits as soon as one of them exits with an
error (stopping the rest), so that its own supervisor sees the failure.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

POLL_SECONDS = 0.5
STOP_SECONDS = 30.0


def run_processes(count: int, loglevel: str) -> int:
    """Run ``count`` workers until they all end; the first non-zero status, else 0."""
    command = [sys.executable, "-m", "tierstream.cli", "worker", "--loglevel", loglevel]
    return supervise([command] * count)


def supervise(commands: list[list[str]]) -> int:
    """Run ``commands`` as child processes until they all end; the first non-zero exit
    status (the others are then stopped), else 0."""
    children = [subprocess.Popen(command) for command in commands]  # noqa: S603 - our own

    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    # Poll every child each round (any() over poll() would stop at the first one running,
    # and a failed child behind it would go unnoticed).
    while None in [child.poll() for child in children]:
        failed = [c for c in children if c.returncode not in (None, 0)]
        if failed and status == 0:
            status = failed[0].returncode
            print(
                f"worker process {failed[0].pid} exited with status {status}; stopping the rest",
                file=sys.stderr,
            )
            forward(signal.SIGTERM, None)
            _wait_or_kill(children)
            break
        time.sleep(POLL_SECONDS)
    for child in children:
        if child.returncode not in (None, 0) and status == 0:
            status = child.returncode
    return status


def _wait_or_kill(children: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
