"""A private local Redis Cluster for tests: 3 masters with a replica each, on free ports.

Started with ``infra/services.sh cluster-up`` in a run directory of its own (so the shared
services are never touched), stopped with ``cluster-down --kill`` at the end of the test
session. Set ``TIERSTREAM_TEST_REDIS_CLUSTER_URL`` (``redis+cluster://host:port``) to use
a cluster that is already running instead; the failure tests that kill nodes need the
private one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
NODES = 6  # 3 masters, 1 replica each
HOST = "127.0.0.1"


def free_base_port() -> int:
    """A port p with p..p+5 and their cluster bus ports (+10000) all free."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            base = probe.getsockname()[1]
        if base + NODES + 10_000 >= 65_536:
            continue
        ports = [base + i for i in range(NODES)] + [base + 10_000 + i for i in range(NODES)]
        if all(_free(port) for port in ports):
            return base
    raise RuntimeError("no free range of ports for a local Redis Cluster")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


class LocalCluster:
    """infra/services.sh's cluster in ``run_dir``, with the means to hurt it."""

    def __init__(self, run_dir: Path, base_port: int) -> None:
        self.run_dir = run_dir
        self.base_port = base_port
        # Every node as a seed: a client started after a node was killed asks another.
        nodes = ",".join(f"{HOST}:{base_port + i}" for i in range(NODES))
        self.url = f"redis+cluster://{nodes}"
        self.env = {
            **os.environ,
            "TIERSTREAM_RUN_DIR": str(run_dir),
            "TIERSTREAM_REDIS_CLUSTER_PORT": str(base_port),
            "TIERSTREAM_REDIS_CLUSTER_REPLICAS": "1",
            "TIERSTREAM_REDIS_CLUSTER_NODE_TIMEOUT": "2000",
        }

    def services(self, *args: str) -> None:
        subprocess.run(  # our own script
            ["bash", str(ROOT / "infra" / "services.sh"), *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=180,
        )

    def up(self) -> None:
        self.services("cluster-up")

    def down(self) -> None:
        self.services("cluster-down", "--kill")

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, socket_timeout=5)

    def masters(self) -> list[int]:
        """Ports of the nodes serving slots now."""
        found = []
        for port in range(self.base_port, self.base_port + NODES):
            try:
                role = self.client(port).execute_command("ROLE")[0]
            except redis.RedisError:
                continue
            if role in (b"master", "master"):
                found.append(port)
        return found

    def node_id(self, port: int) -> str:
        return str(self.client(port).execute_command("CLUSTER MYID"), "ascii")

    def slot_ranges(self, port: int) -> list[tuple[int, int]]:
        """The slot ranges the master on ``port`` serves."""
        nodes = self.client(port).cluster("nodes")
        me = next(node for node in nodes.values() if "myself" in node["flags"])
        return [(int(first), int(last)) for first, last in me["slots"]]

    def owner(self, slot: int) -> int:
        """Port of the master serving ``slot``."""
        for port in self.masters():
            if any(first <= slot <= last for first, last in self.slot_ranges(port)):
                return port
        raise LookupError(f"no master serves slot {slot}")

    def slots_to_move(self, slot: int) -> tuple[int, int]:
        """(owner of ``slot``, how many of its lowest slots to move to take ``slot`` along).

        ``redis-cli --cluster reshard`` moves a source's slots lowest first.
        """
        source = self.owner(slot)
        below = sum(
            min(last, slot) - first + 1 for first, last in self.slot_ranges(source) if first <= slot
        )
        return source, below

    def kill(self, port: int) -> None:
        """SIGKILL one node (its replica takes over after the node timeout)."""
        pid = int((self.run_dir / "redis-cluster" / str(port) / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)

    def replica_of(self, port: int) -> int:
        """Port of the replica of the master on ``port``."""
        master = self.node_id(port)
        nodes = self.client(port).cluster("nodes")
        address = next(name for name, node in nodes.items() if node["master_id"] == master)
        return int(address.rsplit(":", 1)[1].split("@")[0])

    def wait_promoted(self, port: int, timeout: float = 60) -> None:
        """Until the node on ``port`` is a master and the cluster is whole again."""
        deadline = time.monotonic() + timeout
        while port not in self.masters():
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica on {port} was not promoted")
            time.sleep(0.2)
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def reshard(self, source: int, target: int, slots: int) -> None:
        """Move ``slots`` slots (with their keys) from one master to another, live."""
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                f"{HOST}:{source}",
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
                "--cluster-pipeline",
                "100",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )

    def wait_ok(self, timeout: float = 60) -> None:
        """Until every live node reports cluster_state:ok."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for port in range(self.base_port, self.base_port + NODES):
                try:
                    states.append(self.client(port).cluster("info")["cluster_state"])
                except redis.RedisError:
                    continue
            if states and all(state == "ok" for state in states):
                return
            time.sleep(0.2)
        raise AssertionError("the cluster did not come back to cluster_state:ok")
