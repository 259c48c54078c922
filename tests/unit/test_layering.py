"""The library's layering, read from the import graph of ``src/tfopt``.

Stages may import the shared modules at the package root and the stages they
are declared to build on (``STAGE_DEPS``), never a sibling sideways; only
``client/`` and ``cli/`` import ``kfp`` or ``tfopt.components`` /
``tfopt.pipelines``. Lazy imports inside functions count too. The modules import
each other without a cycle, and none of the library, components or pipelines is
over ``MAX_MODULE_LINES`` lines.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tfopt"
MAX_MODULE_LINES = 450

# What each stage builds on (besides the shared root modules). The order of
# the pipeline is data -> training -> compression -> evaluation -> deploy;
# evaluation's runtime (TFLite / SavedModel predictors) is used by the
# int8 fallback of compression, and select writes the reports.
STAGE_DEPS = {
    "data": set(),
    "training": {"data"},
    "reporting": set(),
    "evaluation": {"data", "reporting"},
    "compression": {"data", "training", "evaluation"},
    "deploy": {"data"},
    "launch": {"data", "training"},
}
TOP_LAYERS = {"client", "cli"}  # may import anything, kfp included
SHARED = {
    "_keras", "errors", "fsutil", "checks", "distribute", "model_info", "registry", "settings",
    "accelerators",
    "__init__",
}  # fmt: skip
FORBIDDEN_OUTSIDE_TOP = (
    "kfp",
    "tfopt.components",
    "tfopt.pipelines",
    "google_cloud_pipeline_components",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, dict[str, str]]:
    """Module -> {imported tfopt module: where (``path:line``)}; a package's ``__init__``
    is the package, and ``from package import module`` names both."""
    paths = {_module_name(p): p for p in _library_modules()}
    graph: dict[str, dict[str, str]] = {}
    for module, path in paths.items():
        edges = graph.setdefault(module, {})
        for line, name in _imports(path):
            if name in paths and name != module:
                edges.setdefault(name, f"{path.relative_to(ROOT)}:{line}")
    return graph


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph: dict[str, dict[str, str]], component: list[str]) -> str:
    """One cycle through ``component``'s first module, each import with where it is."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier and start not in came_from:  # breadth first: the shortest way back
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w in members and w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    path = [start]
    while len(path) == 1 or path[-1] != start:
        path.append(came_from[path[-1]])
    path.reverse()
    return " -> ".join([start] + [f"{b} ({graph[a][b]})" for a, b in itertools.pairwise(path)])


def _stage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tfopt" or len(parts) < 2:
        return None
    return parts[1]


def _library_modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_library_module_belongs_to_a_known_stage_or_the_shared_root():
    unknown = []
    for path in _library_modules():
        rel = path.relative_to(SRC)
        if len(rel.parts) == 1:
            if rel.stem not in SHARED:
                unknown.append(str(rel))
        elif rel.parts[0] not in STAGE_DEPS and rel.parts[0] not in TOP_LAYERS:
            unknown.append(str(rel))
    assert not unknown, f"modules outside the declared stages: {unknown}"


def test_no_kfp_and_no_pipeline_code_below_the_client_layer():
    offending = []
    for path in _library_modules():
        rel = path.relative_to(SRC)
        if rel.parts[0] in TOP_LAYERS:
            continue
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_OUTSIDE_TOP):
                offending.append(f"src/tfopt/{rel}:{line} imports {name}")
    assert not offending, "\n".join(offending)


def test_stages_import_only_the_stages_they_build_on():
    offending, checked = [], 0
    for path in _library_modules():
        rel = path.relative_to(SRC)
        own = rel.parts[0] if len(rel.parts) > 1 else None
        if own in TOP_LAYERS:
            continue
        allowed = STAGE_DEPS.get(own, set()) | ({own} if own else set())
        for line, name in _imports(path):
            stage = _stage(name)
            if stage is None or stage in SHARED or name.count(".") < 1:
                continue
            if stage not in STAGE_DEPS and stage not in TOP_LAYERS:
                continue  # a shared root module (checked above) or a symbol of tfopt/__init__
            checked += 1
            if stage not in allowed:
                where = own or "the shared root"
                offending.append(f"src/tfopt/{rel}:{line} ({where}) imports {name} ({stage})")
    assert not offending, "\n".join(offending)
    assert checked > 50  # the graph was really read


def test_the_graph_reader_sees_lazy_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from tfopt.training import train\n    import kfp\n")
    assert {name for _, name in _imports(sample)} >= {"tfopt.training.train", "kfp"}


def test_the_library_has_no_import_cycle():
    graph = _import_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles (move what both sides share to a module of its own):\n" + (
        "\n".join(_cycle_path(graph, c) for c in cycles)
    )
    assert sum(len(e) for e in graph.values()) > 200  # the graph was really read


def test_the_cycle_check_finds_a_cycle_and_says_where():
    graph = {"a": {"b": "a.py:3"}, "b": {"c": "b.py:5"}, "c": {"a": "c.py:7"}, "d": {"a": "d.py:1"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycle_path(graph, ["a", "b", "c"]) == "a -> b (a.py:3) -> c (b.py:5) -> a (c.py:7)"


def test_no_module_is_over_the_line_limit():
    files = [*_library_modules(), *(ROOT / "components").rglob("*.py")]
    files += (ROOT / "pipelines").rglob("*.py")
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in files}
    long = {p for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them at a seam):\n" + (
        "\n".join(f"{p}: {sizes[p]} lines" for p in sorted(long))
    )
    assert len(sizes) > 100  # the three trees were really read
