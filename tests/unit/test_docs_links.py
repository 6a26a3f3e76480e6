"""The README and docs/ stand on their own: every relative link resolves inside the
repository, the contracts reference is linked, and nothing points outside the project.
They also say what the code does: every setting is in the table of docs/operations.md, and
the README's command list shows only options the commands have."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: {target}"
        assert path.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"


def test_the_contracts_are_the_projects_own() -> None:
    assert "(docs/contracts.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert "SPEC.md" not in page.read_text(encoding="utf-8"), page.name


def test_every_setting_is_in_the_operations_table() -> None:
    """docs/operations.md is the one place that lists every TIERSTREAM_ setting."""
    from tierstream.settings import Settings  # noqa: PLC0415 - only this test needs it

    table = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\|[^|]*", table, flags=re.MULTILINE))
    documented = set(re.findall(r"`TIERSTREAM_([A-Z0-9_]+)`", "\n".join(rows)))
    missing = sorted(
        name.upper() for name in Settings.model_fields if name.upper() not in documented
    )
    assert not missing, f"settings missing from the tables of docs/operations.md: {missing}"


def _readme_commands() -> list[str]:
    """The lines of the README's command list (the code block under "## Commands")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    lines: list[str] = []
    for line in block.splitlines():
        code = line.split("#", 1)[0]
        if code.startswith("tierstream "):
            lines.append(code)
        elif code.strip() and lines:  # a continuation of the command above
            lines[-1] += " " + code.strip()
    return lines


def test_the_readme_commands_have_the_options_it_shows() -> None:
    import typer  # noqa: PLC0415 - only this test needs the command tree

    from tierstream.cli import app  # noqa: PLC0415

    root: Any = typer.main.get_command(app)
    for line in _readme_commands():
        command = root
        words = line.split()[1:]
        while hasattr(command, "commands") and words and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        if command is root or command.name == "bench":  # --version; bench parses its own
            continue
        names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
        shown = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", " ".join(words)))
        assert shown <= names | {"--help"}, f"{line.strip()}: {sorted(shown - names)}"
