"""The docs' tables of techniques, variants and settings, made from the registry.

docs/compression.md holds the output between ``<!-- registry:start -->`` and
``<!-- registry:end -->``; a test fails when they differ (``tfopt params --techniques``
prints it).
"""

from __future__ import annotations

from tfopt import registry
from tfopt.compression import techniques  # noqa: F401 - registers every technique

START, END = "<!-- registry:start -->", "<!-- registry:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def variants_table() -> str:
    rows = ["| variant | technique | from | format | switch (default) | fixed settings |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for v in registry.variants():
        switch = f"`{v.switch}` ({'on' if v.default else 'off'})" if v.switch else "its base's"
        fixed = ", ".join(f"`{k}={val}`" for k, val in v.settings.items()) or ""
        rows.append(f"| `{v.name}` | {v.technique} | {v.base} | {v.format} | {switch} | {fixed} |")
    return "\n".join(rows)


def settings_table() -> str:
    rows = ["| technique | setting | pipeline parameter | default | allowed | meaning |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for t in registry.techniques():
        for s in t.settings:
            param = f"`{s.param}`" if s.param else ""
            rows.append(
                f"| {t.name} | `{s.name}` | {param} | `{s.default!r}` | {_cell(s.allowed())} "
                f"| {_cell(s.description)} |"
            )
    return "\n".join(rows)


def techniques_markdown() -> str:
    """The block between the markers: techniques, variants, settings."""
    lines = ["| technique | what it does | output |", "|---|---|---|"]
    lines += [
        f"| {t.name} | {_cell(t.summary)} | {t.output_format} |" for t in registry.techniques()
    ]
    return "\n\n".join(["\n".join(lines), variants_table(), settings_table()])


def block(text: str) -> str:
    """The registry block of a document's ``text`` (between the markers)."""
    if START not in text or END not in text:
        raise ValueError(f"no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()
