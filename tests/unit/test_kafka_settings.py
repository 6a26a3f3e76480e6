"""One settings model for every Kafka client, and settings mistakes refused at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tierstream.cli import app
from tierstream.kafka_settings import KafkaSettings
from tierstream.settings import Settings

SASL = {
    "TIERSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
    "TIERSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "TIERSTREAM_KAFKA_SASL_USERNAME": "app",
    "TIERSTREAM_KAFKA_SASL_PASSWORD": "pw",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "TIERSTREAM_API_TOKEN",
        "TIERSTREAM_KAFKA_SECURITY_PROTOCOL",
        "TIERSTREAM_KAFKA_SASL_MECHANISM",
        "TIERSTREAM_KAFKA_SASL_USERNAME",
        "TIERSTREAM_KAFKA_SASL_PASSWORD",
        "TIERSTREAM_KAFKA_SSL_CAFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plaintext_clients_get_no_options(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.client_options() == {}
    assert settings.faust_credentials() is None


def test_sasl_settings_reach_every_client_kind(env: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        env.setenv(name, value)
    settings = Settings()
    assert settings.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "app",
        "sasl_plain_password": "pw",
    }
    credentials = settings.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "app" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert "pw" not in repr(settings)  # a secret, never printed


def test_sasl_ssl_builds_one_tls_context(env: pytest.MonkeyPatch) -> None:
    for name, value in SASL.items():
        env.setenv(name, value)
    env.setenv("TIERSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    options = Settings().client_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = Settings().faust_credentials()
    assert credentials.protocol.value == "SASL_SSL"


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "app", "kafka_sasl_password": "pw"}, "KAFKA_SASL_*"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"}, "no such"),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "KAFKA_SSL_* files"),
        ({"kafka_security_protocol": "KERBEROS"}, "kafka_security_protocol"),
    ],
)
def test_inconsistent_security_settings_are_refused(
    env: pytest.MonkeyPatch, values: dict[str, str], needle: str
) -> None:
    with pytest.raises(ValidationError, match=needle.replace("*", r"\*")):
        KafkaSettings(**values)  # type: ignore[arg-type]


def test_empty_optional_values_mean_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("TIERSTREAM_KAFKA_SASL_USERNAME", "")
    env.setenv("TIERSTREAM_KAFKA_SSL_CAFILE", " ")
    assert Settings().client_options() == {}


def test_an_empty_api_token_is_an_error_not_auth_off(env: pytest.MonkeyPatch) -> None:
    env.setenv("TIERSTREAM_API_TOKEN", "")
    with pytest.raises(ValidationError, match="must not be empty"):
        Settings()
    for command in (["serve"], ["worker"], ["worker", "--processes", "2"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "api_token" in lines[0], result.stderr
        assert "Traceback" not in result.output


def test_topics_come_from_the_same_settings(env: pytest.MonkeyPatch) -> None:
    from tierstream.topics import topics_from_settings

    env.setenv("TIERSTREAM_PARTITIONS", "6")
    env.setenv("TIERSTREAM_DEAD_LETTER_PARTITIONS", "2")
    env.setenv("TIERSTREAM_TOPIC_PURCHASES", "p")
    topics = topics_from_settings(Settings())
    assert {name: topics[name] for name in ("p", "engagements", "tier-changes")} == {
        "p": 6,
        "engagements": 6,
        "tier-changes": 6,
    }
    assert topics["dead-letters"] == 2
    # Every other topic the application uses is partitioned like the inputs.
    assert all(count == 6 for name, count in topics.items() if name != "dead-letters")


def test_settings_errors_of_topics_create_are_one_line(env: pytest.MonkeyPatch) -> None:
    env.setenv("TIERSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    result = CliRunner().invoke(app, ["topics", "create"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_default_config_is_package_data() -> None:
    from tierstream.settings import DEFAULT_CONFIG

    assert Path(str(DEFAULT_CONFIG)).parent.name == "configs"
    assert DEFAULT_CONFIG.read_text().startswith("# tierstream default scoring configuration")


def test_the_worker_app_takes_replication_and_credentials_from_the_settings(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Faust's own topics (the assignor's leader topic) get TIERSTREAM_REPLICATION_FACTOR."""
    from scoring.engine import Scorer
    from streams.worker import build_app
    from tierstream.stores.redis import RedisStore
    from tierstream.stores.redis_async import AsyncRedisStore

    settings = Settings(
        replication_factor=3,
        kafka_bootstrap="b1:9096,b2:9096",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="app",
        kafka_sasl_password="pw",  # type: ignore[arg-type]
        redis_url="redis://127.0.0.1:1/0",  # never connected to: building the app is offline
        data_dir=tmp_path,
    )
    store = RedisStore(settings.redis_url, partitions=2, namespace="unused")
    app = build_app(settings, store, Scorer(settings.scoring_config()), AsyncRedisStore(store))
    assert app.conf.topic_replication_factor == 3
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert [str(url) for url in app.conf.broker] == ["kafka://b1:9096", "kafka://b2:9096"]
