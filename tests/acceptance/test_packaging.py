"""The package as users install it: a wheel, in a fresh virtual environment, outside the
repository. A checkout hides what the wheel lacks (a config file next to the sources, a
dependency only the dev extra brings), so this installs the wheel the way the Dockerfile
does (``pip install -c constraints.txt``) and runs the commands from elsewhere.

Slow the first time on a machine (pip downloads the runtime dependencies from the index),
then pip's cache serves them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the build needs from the checkout; everything else (.venv, run dirs, caches) stays.
SKIP = shutil.ignore_patterns(
    ".git", ".venv*", "infra", "out", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
)

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TIERSTREAM_"))}
    return subprocess.run(  # our own commands
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ directory of a fresh venv with the wheel of this checkout installed."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=SKIP, symlinks=True)
    wheels = base / "wheels"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=source,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("tierstream-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    done = _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "-c",
         str(ROOT / "constraints.txt"), str(wheel)],
        cwd=base,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    yield bin_dir


def test_the_wheel_carries_the_default_config(installed: Path, tmp_path: Path) -> None:
    shown = _run([str(installed / "tierstream"), "config", "validate"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "valid" in shown.stdout


def test_installed_replay_of_cdnow_from_outside_the_repository(
    installed: Path, tmp_path: Path
) -> None:
    result = _run(
        [str(installed / "tierstream"), "replay", "cdnow", "--format", "cdnow",
         "--as-of", "1998-07-01", "--quiet"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["events"] == 69_659 and summary["customers"] == 23_570, summary
    assert summary["rejected"] == 0


def test_installed_config_validate_names_every_problem(installed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    default = _run(
        [str(installed / "python"), "-c",
         "from tierstream.settings import DEFAULT_CONFIG; print(DEFAULT_CONFIG.read_text())"],
        cwd=tmp_path,
    ).stdout  # fmt: skip
    bad.write_text(
        default.replace("base_currency: USD", "base_currency: dollars").replace(
            "window_days: 365", "window_days: 0"
        )
    )
    result = _run([str(installed / "tierstream"), "config", "validate", str(bad)], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "window_days" in result.stderr and "base_currency" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_dependencies_leave_out_the_benchmark_tooling(installed: Path) -> None:
    probe = _run(
        [str(installed / "python"), "-c",
         "import importlib.util as u; print([m for m in ('matplotlib', 'pyinstrument', "
         "'pytest') if u.find_spec(m)])"],
        cwd=installed,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


def test_the_wheel_ships_the_product_without_the_benchmark(installed: Path) -> None:
    (wheel,) = (installed.parent.parent / "wheels").glob("tierstream-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"scoring", "models", "streams", "tierstream"} <= tops, tops
    assert "bench" not in tops, "bench/ belongs to the checkout, not the wheel"
    probe = _run(
        [
            str(installed / "python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('bench'))",
        ],
        cwd=installed,
    )
    assert probe.stdout.strip() == "None", probe.stdout + probe.stderr


def test_the_wheel_ships_the_redis_stores_lua_scripts(installed: Path) -> None:
    # The scripts are package data (tierstream/stores/lua/), read when redis.py is imported.
    (wheel,) = (installed.parent.parent / "wheels").glob("tierstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    scripts = {"tierstream/stores/lua/commit.lua", "tierstream/stores/lua/ack.lua"}
    assert scripts <= names, sorted(n for n in names if n.startswith("tierstream/stores/"))
    probe = _run(
        [
            str(installed / "python"),
            "-c",
            "from tierstream.stores.redis import _ACK, _COMMIT; "
            "print(_COMMIT.startswith('#!lua'), _ACK.startswith('#!lua'))",
        ],
        cwd=installed,
    )
    assert probe.stdout.strip() == "True True", probe.stdout + probe.stderr


def test_installed_bench_asks_for_its_extra(installed: Path) -> None:
    result = _run([str(installed / "tierstream"), "bench", "--quick"], cwd=installed)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "tierstream[bench]" in result.stderr and "Traceback" not in result.stderr


def test_installed_report_asks_for_the_plots_extra(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    args = ["report", "--out", str(out), "--replay", "cdnow", "--as-of", "1998-07-01"]
    result = _run([str(installed / "tierstream"), *args], cwd=installed)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "tierstream[plots]" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_installed_version_is_the_package_version(installed: Path) -> None:
    from tierstream import __version__

    shown = _run([str(installed / "tierstream"), "--version"], cwd=installed)
    assert shown.stdout.strip() == f"tierstream {__version__}"


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_constraints_pin_every_dependency_and_the_image_uses_them() -> None:
    """`make install` and the image install exact versions: every runtime and extra
    dependency has one pin in constraints.txt."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra if not r.startswith("tierstream")}
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[_name(name)] = version
    assert not wanted - set(pins), sorted(wanted - set(pins))
    assert "pip install -c constraints.txt ." in (ROOT / "Dockerfile").read_text()
    assert "-c constraints.txt -e '.[dev]'" in (ROOT / "Makefile").read_text()
