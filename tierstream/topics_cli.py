"""``tierstream topics``: the application's Kafka topics."""

from __future__ import annotations

from typing import Annotated

import typer

from tierstream.cli_input import fail, load_settings

topics_app = typer.Typer(
    no_args_is_help=True,
    help="The application's Kafka topics.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@topics_app.command("create")
def create_command(
    replication_factor: Annotated[
        int | None,
        typer.Option(min=1, help="Replicas per partition (default: TIERSTREAM_REPLICATION_FACTOR)"),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for the broker")] = 30.0,
    quiet: Annotated[bool, typer.Option(help="Print nothing on success")] = False,
) -> None:
    """Create the input, tier-change and dead-letter topics (idempotent).

    Partition counts come from TIERSTREAM_PARTITIONS and TIERSTREAM_DEAD_LETTER_PARTITIONS;
    the connection (SASL, TLS) is the worker's. Existing topics are kept as they are.
    """
    from kafka.errors import KafkaError  # noqa: PLC0415 - Kafka's client only when used

    from tierstream.topics import create_topics, ready_line  # noqa: PLC0415

    settings = load_settings()
    if replication_factor is not None:
        settings = settings.model_copy(update={"replication_factor": replication_factor})
    try:
        topics = create_topics(settings, timeout_s=timeout)
    except (KafkaError, ValueError) as exc:
        fail(f"cannot create topics on {settings.kafka_bootstrap}: {exc}")
    if not quiet:
        print(ready_line(settings, topics))
