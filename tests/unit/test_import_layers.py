"""Imports point down the layers and never in a circle, checked on the source (ast).

Layers, top to bottom; a module may import its own layer and any layer below it:

1. tools: the benchmark harness (bench/).
2. entry points: the command line, the HTTP API, ``serve`` and the bootstrap that assembles
   each process (tierstream/cli*.py, tierstream/*_cli.py, tierstream/api*.py,
   tierstream/openapi*.py, tierstream/serve.py, tierstream/bootstrap.py).
3. service: the rest of tierstream/ (replay, backfill, audiences, KPIs, reports, ...).
4. stores and streams: tierstream/stores/ and the streaming runtime streams/.
5. core: what the runtime and the service share: settings, the clock, the erasure
   contract, the behaviour segments, the JSON encoding (listed in ``CORE``).
6. models: the learned models (models/).
7. scoring: the pure scoring core (scoring/).

Every import counts: at the top of a module, inside a function, or only for type checking.
What does not hold yet is listed, edge by edge and with its reason, in ``ALLOWED_UP`` and
``ALLOWED_CIRCLES``. The lists may only shrink: a listed import that no longer exists
fails the test too, so that its entry is deleted.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scoring", "models", "streams", "tierstream", "bench")

ENTRY_POINTS = (
    "tierstream.cli",
    "tierstream.cli_*",
    "tierstream.*_cli",
    "tierstream.api",
    "tierstream.api_*",
    "tierstream.openapi*",
    "tierstream.serve",
    # What assembles each process from the settings (worker, serve, deliver).
    "tierstream.bootstrap",
    # The `config apply|show|propose` commands (registered by config_cli).
    "tierstream.config_store",
    "tierstream.config_propose",
)
CORE = (
    "tierstream.settings",
    "tierstream.kafka_settings",
    "tierstream.clock",
    "tierstream.jsonbytes",
    "tierstream.erasure",
    "tierstream.behaviours",
    "tierstream.config_versions",
    "tierstream.published",
)
# Modules that changes being merged alongside this test bring; until they are here, the
# entries that name them are not checked for staleness. Empty this set once they exist.
ARRIVING: frozenset[str] = frozenset()
LAYERS = ("tools", "entry points", "service", "stores and streams", "core", "models", "scoring")

# Imports that point up a layer, left for the reshape that removes them. (importer, imported)
ALLOWED_UP: dict[tuple[str, str], str] = {}

# Imports inside a circle of modules, one layer. Each circle is broken by the edges listed
# here (and those in ALLOWED_UP); without them the graph must have no circle at all.
# (importer, imported)
ALLOWED_CIRCLES: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(tree: ast.AST) -> Iterable[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from package import module` imports the module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {
            target for target in imported_names(tree) if target in modules and target != name
        }
    return graph


def layer(module: str) -> int:
    top = module.split(".", 1)[0]
    if top == "bench":
        found = "tools"
    elif top in ("scoring", "models"):
        found = top
    elif top == "streams" or module.startswith("tierstream.stores"):
        found = "stores and streams"
    elif module in CORE:
        found = "core"
    elif any(fnmatch.fnmatchcase(module, pattern) for pattern in ENTRY_POINTS):
        found = "entry points"
    else:
        found = "service"
    return LAYERS.index(found)


def edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(source, target) for source, targets in graph.items() for target in targets}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer_and_the_layers_exist():
    graph = import_graph()
    assert {"scoring.engine", "streams.worker", "tierstream.cli", "bench.run"} <= set(graph)
    assert layer("tierstream.cli") < layer("tierstream.replay") < layer("streams.worker")
    assert layer("streams.worker") < layer("tierstream.settings") < layer("models.snapshot")
    assert layer("models.snapshot") < layer("scoring.engine")
    assert set(CORE) - ARRIVING <= set(graph), "a CORE module was renamed or moved: update CORE"


def test_no_import_points_up_a_layer():
    graph = import_graph()
    upward = sorted(
        (source, target)
        for source, target in edges(graph)
        if layer(target) < layer(source) and (source, target) not in ALLOWED_UP
    )
    assert not upward, "imports that point up a layer:\n" + "\n".join(
        f"  {source} ({LAYERS[layer(source)]}) -> {target} ({LAYERS[layer(target)]})"
        for source, target in upward
    )


def test_there_is_no_circle_of_imports():
    graph = import_graph()
    for source, target in (*ALLOWED_CIRCLES, *ALLOWED_UP):
        graph.get(source, set()).discard(target)
    found = circles(graph)
    assert not found, "modules that import each other (directly or around a circle):\n" + (
        "\n".join(f"  {' <-> '.join(component)}" for component in found)
    )


def test_the_allowlists_hold_only_imports_that_still_exist():
    graph = import_graph()
    existing = edges(graph)
    stale = sorted(
        edge
        for edge in (set(ALLOWED_UP) | set(ALLOWED_CIRCLES)) - existing
        if not (set(edge) & ARRIVING - set(graph))
    )
    assert not stale, f"no longer imported, delete from the allowlist: {stale}"
    needless = sorted(edge for edge in ALLOWED_UP if layer(edge[1]) >= layer(edge[0]))
    assert not needless, f"these point down: delete from ALLOWED_UP: {needless}"
