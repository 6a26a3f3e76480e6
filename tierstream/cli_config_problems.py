"""Every problem of a scoring config, one line each: what ``config validate`` and
``config apply`` both report before anything is read further or published."""

from __future__ import annotations

import typer
import yaml
from pydantic import ValidationError

from scoring.config import load_config_text
from tierstream.cli_input import say


def config_problems(text: str) -> list[str]:
    """Every problem of a scoring config's text, one line each (empty: valid)."""
    try:
        load_config_text(text)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors()
        ]
    except yaml.YAMLError as exc:
        return ["not YAML: " + " ".join(str(exc).split())]  # one line, not the YAML's own
    except ValueError as exc:
        return [" ".join(str(exc).split())]
    return []


def report_problems(text: str, name: str) -> None:
    """Every problem of the config ``text``, one line each, and exit 2; nothing if valid."""
    found = config_problems(text)
    if found:
        count = f"{len(found)} problem" + ("s" if len(found) > 1 else "")
        say(f"error: {name} is not a valid scoring config ({count}):", "red")
        for problem in found:
            say(f"  {problem}", "red")
        raise typer.Exit(2)
