"""How every Kafka client of tierstream connects: one settings model, one set of options.

The worker (Faust), ``produce``, ``topics create``, the API's health and lag probe and the
benchmarks all build their clients from ``KafkaSettings``, so a cluster that needs SASL or
TLS is configured once, in the environment (prefix ``TIERSTREAM_``), and no client can be
left speaking plaintext to it. ``Settings`` (tierstream/settings.py) extends this model.

kafka-python and aiokafka take the same connection keywords (``security_protocol``,
``sasl_mechanism``, ``sasl_plain_username``, ``sasl_plain_password``, ``ssl_context``), so
``client_options()`` serves both; Faust takes ``faust_credentials()``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_OPTIONAL = (
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_password",
)


class KafkaSettings(BaseSettings):
    """The Kafka connection: bootstrap servers, security, and how topics are created."""

    model_config = SettingsConfigDict(env_prefix="TIERSTREAM_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    # SASL (SASL_PLAINTEXT, SASL_SSL). GSSAPI and OAUTHBEARER are not offered.
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS (SSL, SASL_SSL): the CA that signed the brokers' certificates (default: the
    # system's CAs) and, for mutual TLS, a client certificate and key (PEM).
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    # Topics tierstream creates (tierstream topics create, and Faust's own topics).
    replication_factor: int = Field(default=1, ge=1)
    dead_letter_partitions: int = Field(default=1, ge=1)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A variable set to "" (a compose file's ${VAR:-}) means "not set" here: these
        # are optional, and an empty password or path is never what anyone means.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        protocol = self.kafka_security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        if sasl:
            if self.kafka_sasl_username is None or self.kafka_sasl_password is None:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD"
                )
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username or self.kafka_sasl_password:
            raise ValueError(
                f"KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(SASL_PLAINTEXT or SASL_SSL uses it)"
            )
        files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not tls and any(files):
            raise ValueError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL is {protocol} "
                "(SSL or SASL_SSL uses them)"
            )
        if (self.kafka_ssl_keyfile is not None) and self.kafka_ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE")
        for name, path in zip(("CAFILE", "CERTFILE", "KEYFILE"), files, strict=True):
            if path is not None and not path.is_file():
                raise ValueError(f"KAFKA_SSL_{name}: no such file: {path}")
        return self

    @property
    def kafka_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client (None without TLS)."""
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
        if self.kafka_ssl_certfile is not None:
            password = self.kafka_ssl_password
            context.load_cert_chain(
                str(self.kafka_ssl_certfile),
                str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None,
                password.get_secret_value() if password else None,
            )
        context.check_hostname = self.kafka_ssl_check_hostname
        return context

    def client_options(self) -> dict[str, Any]:
        """Connection keywords for kafka-python and aiokafka clients (not the bootstrap).

        Empty for plaintext, so a local broker's clients look as they always did.
        """
        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.kafka_sasl:
            assert self.kafka_sasl_password is not None  # checked in _consistent
            options |= {
                "sasl_mechanism": self.kafka_sasl_mechanism or "PLAIN",
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get_secret_value(),
            }
        return options

    def faust_broker(self) -> list[str]:
        """Faust's broker list: one ``kafka://host:port`` per bootstrap address."""
        return [f"kafka://{host.strip()}" for host in self.kafka_bootstrap.split(",") if host]

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None: plaintext)."""
        return faust_credentials(self.client_options())


def faust_credentials(options: dict[str, Any]) -> Any:
    """Faust credentials from client options (``client_options()``; None: plaintext).

    ``ssl_cafile``/``ssl_certfile``/``ssl_keyfile``/``ssl_password``/``ssl_check_hostname``
    are taken too when there is no ``ssl_context`` (kafka-python's spelling).
    """
    import faust  # noqa: PLC0415 - only the worker and the benchmarks load Faust

    protocol = options.get("security_protocol", "PLAINTEXT")
    if protocol == "PLAINTEXT":
        return None
    context = options.get("ssl_context")
    if context is None and protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=options.get("ssl_cafile"))
        if options.get("ssl_certfile"):
            context.load_cert_chain(
                options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
            )
        context.check_hostname = options.get("ssl_check_hostname", True)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=options.get("sasl_plain_username"),
        password=options.get("sasl_plain_password"),
        mechanism=options.get("sasl_mechanism", "PLAIN"),
        ssl_context=context,
    )
