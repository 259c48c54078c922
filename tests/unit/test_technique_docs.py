"""docs/compression.md's tables of techniques, variants and settings are the registry's."""

import os

from tfopt.client import technique_docs

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "compression.md")


def test_the_docs_tables_are_made_from_the_registry():
    with open(DOC, encoding="utf-8") as fh:
        written = technique_docs.block(fh.read())
    assert written == technique_docs.techniques_markdown(), (
        "docs/compression.md is stale: paste `tfopt params --techniques` between its "
        f"{technique_docs.START} and {technique_docs.END} markers"
    )


def test_every_variant_and_setting_has_a_row():
    from tfopt import registry

    text = technique_docs.techniques_markdown()
    for v in registry.variants():
        assert f"| `{v.name}` |" in text
    for t in registry.techniques():
        for s in t.settings:
            assert f"| {t.name} | `{s.name}` |" in text
