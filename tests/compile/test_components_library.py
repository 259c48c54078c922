"""Components as a library: ``tfopt compile --components DIR`` writes one YAML per component
that KFP loads back, each describing its inputs; docs/components.md is the reference the
code generates.
"""

from __future__ import annotations

import os

import yaml
from kfp import components as kfp_components

from tfopt import cli
from tfopt.client import component_docs
from tfopt.pipelines.compile import components

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_compile_components_writes_one_loadable_described_yaml_per_component(tmp_path, capsys):
    assert cli.main(["compile", "--components", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    found = components()
    assert sorted(os.path.basename(p) for p in printed) == sorted(f"{n}.yaml" for n in found)
    for name, component in found.items():
        path = str(tmp_path / f"{name}.yaml")
        loaded = kfp_components.load_component_from_file(path)
        spec = component.component_spec
        assert loaded.name == spec.name, name
        assert set(loaded.component_spec.inputs or {}) == set(spec.inputs or {}), name
        with open(path) as fh:
            doc = yaml.safe_load(fh)
        declared = doc["root"]["inputDefinitions"]
        texts = {k: d.get("description") for kind in declared.values() for k, d in kind.items()}
        assert all(texts.values()) and set(texts) == set(spec.inputs or {}), name
        with open(path) as fh:  # the one-line description, in KFP's header comment
            assert f"# Description: {spec.description.splitlines()[0]}" in fh.read(), name


def test_docs_components_reference_is_the_generated_one():
    with open(os.path.join(ROOT, "docs", "components.md")) as fh:
        text = fh.read()
    assert component_docs.block(text) == component_docs.components_markdown(), (
        "docs/components.md is stale: paste component_docs.components_markdown() between "
        "its components markers"
    )
    for name in components():
        assert f"### `{name}`" in text
