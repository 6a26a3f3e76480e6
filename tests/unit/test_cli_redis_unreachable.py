"""A command that meets an unreachable Redis says so in one line, exit 2, no traceback."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tierstream.cli import app
from tierstream.cli_app import TierstreamApp


def test_the_tierstream_command_is_the_app_that_catches_it() -> None:
    assert isinstance(app, TierstreamApp)


def test_an_unreachable_redis_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    probe = TierstreamApp()

    @probe.command()
    def read() -> None:  # what redis-py raises when nothing listens on the port
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    @probe.command()
    def other() -> None:
        """A second command, so that the app keeps its command names."""

    with pytest.raises(SystemExit) as exited:
        probe(args=["read"], prog_name="tierstream")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: cannot reach Redis (TIERSTREAM_REDIS_URL): "
        "Error 111 connecting to 127.0.0.1:1. Connection refused.\n"
    )
