"""The library's layering, read from the import graph of ``src/tfopt``.

Stages may import the shared modules at the package root and the stages they
are declared to build on (``STAGE_DEPS``), never a sibling sideways; only
``client/`` and ``cli/`` import ``kfp`` or ``tfopt.components`` /
``tfopt.pipelines``. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tfopt"

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
SHARED = {"_keras", "errors", "fsutil", "checks", "distribute", "model_info", "__init__"}
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
