"""A secured Kafka and Redis of the tests' own: SASL (PLAIN) with and without TLS, and Redis
with AUTH over TLS. Private processes on free ports, so the shared services stay as they
are; each is stopped by the fixture that started it.

The broker is infra/services.sh's (``TIERSTREAM_KAFKA_SASL=1``) in a run directory of its
own; Redis is Debian's redis-server with a password and only a TLS port.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
SASL_USER = "tierstream"
SASL_SECRET = "sasl-test-secret"  # a throwaway broker's test user
REDIS_SECRET = "redis-test-secret"


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free loopback ports, below the ephemeral range
    (32768 on Linux), where the system's own outgoing connections would not take one
    between this check and the broker binding it."""
    for _ in range(200):
        base = random.randrange(20_000, 32_000)  # not for security
        if all(_free(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class SecuredKafka:
    """A single-node broker: PLAINTEXT (set-up), SASL_PLAINTEXT, SASL_SSL and SSL listeners."""

    run_dir: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TIERSTREAM_RUN_DIR": str(self.run_dir),
            "TIERSTREAM_KAFKA_PORT": str(self.port),
            "TIERSTREAM_KAFKA_SASL": "1",
            "TIERSTREAM_KAFKA_SASL_SECRET": SASL_SECRET,
            "TIERSTREAM_PYTHON": sys.executable,
            "TIERSTREAM_KAFKA_CDS": "0",  # a private broker: no archive of its own
        }

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "kafka" / "tls" / "ca.pem"

    def settings(self, protocol: str, mechanism: str = "PLAIN") -> dict[str, str]:
        """The TIERSTREAM_KAFKA_* settings of a client of the ``protocol`` listener."""
        port = {"SASL_PLAINTEXT": 2, "SASL_SSL": 3, "SSL": 4}[protocol] + self.port
        env = {
            "TIERSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "TIERSTREAM_KAFKA_SECURITY_PROTOCOL": protocol,
        }
        if protocol.startswith("SASL_"):
            env["TIERSTREAM_KAFKA_SASL_MECHANISM"] = mechanism
            env["TIERSTREAM_KAFKA_SASL_USERNAME"] = SASL_USER
            env["TIERSTREAM_KAFKA_SASL_PASSWORD"] = SASL_SECRET
        if protocol.endswith("SSL"):
            env["TIERSTREAM_KAFKA_SSL_CAFILE"] = str(self.ca_file)
        return env

    def services(self, command: str) -> None:
        done = subprocess.run(  # the project's own script
            ["bash", str(ROOT / "infra" / "services.sh"), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {command} failed:\n{done.stdout}\n{done.stderr}")

    @classmethod
    def start(cls, run_dir: Path) -> SecuredKafka:
        for attempt in range(3):
            kafka = cls(run_dir / f"try-{attempt}", free_port_block(5))
            try:
                kafka.services("start-kafka")
                return kafka
            except RuntimeError as exc:
                # Another program took one of the ports since they were checked: try
                # another block; anything else is a real failure.
                if "in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self.services("stop-kafka")


@dataclass
class SecuredRedis:
    """redis-server with AUTH, listening only on TLS."""

    process: subprocess.Popen[bytes]
    port: int
    tls_dir: Path

    @property
    def url(self) -> str:
        ca = self.tls_dir / "cert.pem"
        return (
            f"rediss://:{REDIS_SECRET}@127.0.0.1:{self.port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={ca}"
        )

    @classmethod
    def start(cls, workdir: Path) -> SecuredRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        tls = workdir / "redis-tls"
        tls.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # openssl makes a throwaway certificate
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        port = free_port_block(1)
        process = subprocess.Popen(  # a redis-server of our own
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(tls / "cert.pem"), "--tls-key-file", str(tls / "key.pem"),
             "--tls-ca-cert-file", str(tls / "cert.pem"), "--tls-auth-clients", "no",
             "--requirepass", REDIS_SECRET, "--save", "", "--appendonly", "no",
             "--dir", str(tls)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        secured = cls(process, port, tls)
        deadline = time.monotonic() + 15
        while True:
            try:
                client = redis.Redis.from_url(secured.url, socket_timeout=5)
                client.ping()
                client.close()
                return secured
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    secured.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
