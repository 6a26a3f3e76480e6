"""The compose stack's monitoring: Prometheus scrape config and alert rules, the Grafana
dashboard, and that every metric they query is one the worker or the API exposes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scoring.engine import Scorer
from streams.deliver_metrics import delivery_registry
from streams.metrics import Metrics
from tierstream.api import STATE_KEY, create_api
from tierstream.settings import Settings, load_scoring_config
from tierstream.stores.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tierstream.json"
METRIC = re.compile(r"\b((?:tierstream|process)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian package 'prometheus'; `make install` installs "
            "it when it can): the alert rules are not checked here"
        )
    return found


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_json_is_generated_from_its_panel_list() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_dashboard", GRAFANA / "make_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run python infra/grafana/make_dashboard.py"


def exposed_metric_names() -> set[str]:
    """Every metric family a worker's /metrics can serve (its own and the API's), and
    ``tierstream deliver``'s."""
    metrics = Metrics()
    metrics.watch_shards(dict)  # as the worker does (tierstream_outbox_depth, owned shards)
    store = MemoryStore(partitions=2)
    app = create_api(store, Scorer(load_scoring_config(None)), Settings(), metrics)
    asyncio.run(app[STATE_KEY].sizes.get())  # tier sizes are exposed once counted
    names = set()
    for registry in (metrics.registry, app[STATE_KEY].registry, delivery_registry([])):
        names |= {family.name for family in registry.collect()}
    return names


def referenced(expressions: list[str]) -> set[str]:
    found = set()
    for expression in expressions:
        for name in METRIC.findall(expression):
            for suffix in SUFFIXES:
                name = name.removesuffix(suffix)
            found.add(name)
    return found


def dashboard_expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in data["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_queried_metric_is_exposed() -> None:
    exposed = exposed_metric_names()
    for source, expressions in (
        ("dashboard", dashboard_expressions()),
        ("alerts", alert_expressions()),
    ):
        missing = referenced(expressions) - exposed
        assert not missing, (source, sorted(missing))


def test_the_dashboard_shows_what_operators_look_for() -> None:
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in (
        "lag",
        "throughput",
        "by cause",
        "latency",
        "dead letters",
        "outbox",
        "timer lateness",
    ):
        assert topic in titles, topic


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_the_worker_and_the_api_where_they_listen() -> None:
    services = compose()["services"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_port = int(services["worker"]["environment"]["TIERSTREAM_API_PORT"])
    assert jobs["worker"]["dns_sd_configs"][0] == {
        "names": ["worker"],
        "type": "A",
        "port": worker_port,
        "refresh_interval": "15s",
    }
    api_port = services["api"]["environment"]["TIERSTREAM_API_PORT"]
    assert jobs["api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert services["worker"]["environment"]["TIERSTREAM_API_HOST"] == "0.0.0.0"
    deliver_command = services["deliver"]["command"]
    deliver_port = int(deliver_command[deliver_command.index("--metrics-port") + 1])
    assert jobs["deliver"]["dns_sd_configs"][0]["port"] == deliver_port
    assert config["rule_files"] == ["alerts.yml"]


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).is_dir()
    assert (ROOT / mounts["/var/lib/grafana/dashboards"] / "tierstream.json").is_file()
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    assert (
        sources["datasources"][0]["uid"]
        == json.loads(DASHBOARD.read_text())["panels"][0]["datasource"]["uid"]
    )


def test_state_and_metrics_keep_their_volumes() -> None:
    services = compose()["services"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert any(v.startswith("prometheus-data:") for v in services["prometheus"]["volumes"])
    assert "--appendonly" in services["redis"]["command"]
