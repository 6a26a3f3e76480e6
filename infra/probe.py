"""Readiness probes for the local services (used by infra/services.sh).

    python infra/probe.py kafka 127.0.0.1:9092 [--timeout 90] [--pid PID]
    python infra/probe.py redis redis://127.0.0.1:6379/0 [--timeout 30] [--pid PID]

Exit 0 as soon as the service answers (Kafka: cluster metadata lists an unfenced
broker; Redis: PING), 1 on timeout or when the process given by --pid has died.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kafka_ready(bootstrap: str) -> str | None:
    """None when the broker answers metadata with an unfenced broker, else why not."""
    import kafka
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # A plain TCP connect first: cheap, and it spares the client's reconnect back-off
    # while the listener is not up yet.
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc}"
    options: dict[str, int] = {"request_timeout_ms": 3000}
    if int(kafka.__version__.split(".")[0]) >= 3:
        options["bootstrap_timeout_ms"] = 3000
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="tierstream-probe", **options
        )
    except KafkaError as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        cluster = admin.describe_cluster()
    except KafkaError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        admin.close()
    brokers = [b for b in cluster.get("brokers", []) if not b.get("is_fenced", False)]
    if not brokers:
        return "no unfenced broker in cluster metadata yet"
    if cluster.get("controller_id", -1) < 0:
        return "no active controller yet"
    return None


def redis_ready(url: str) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=["kafka", "redis"])
    parser.add_argument("address", help="Kafka bootstrap host:port or Redis URL")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--pid", type=int, help="fail at once when this process exits")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.CRITICAL)  # the clients log every refused connection
    check = kafka_ready if args.service == "kafka" else redis_ready
    deadline = time.monotonic() + args.timeout
    reason: str | None = "not tried"
    while True:
        if not _alive(args.pid):
            print(f"probe: {args.service} process {args.pid} has exited", file=sys.stderr)
            return 1
        reason = check(args.address)
        if reason is None:
            return 0
        if time.monotonic() >= deadline:
            print(
                f"probe: {args.service} at {args.address} not ready after "
                f"{args.timeout:.0f}s: {reason}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.25)


if __name__ == "__main__":
    sys.exit(main())
