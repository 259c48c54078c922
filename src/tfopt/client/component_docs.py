"""docs/components.md's reference: every component of ``tfopt.components``, from the code.

For each component: its one-line description, how to get it (the Python import, or the
YAML ``tfopt compile --components DIR`` writes), and its inputs and outputs with their
types, defaults and descriptions, which are the compiled YAML's
(``components/_describe.py``). ``tfopt compile --components`` and this page are made from
the same list (``tfopt.pipelines.compile.components``); ``tests/compile/test_components_
library.py`` fails when the page differs from :func:`components_markdown`.
"""

from __future__ import annotations

import json

START, END = "<!-- components:start -->", "<!-- components:end -->"
EXAMPLE_START, EXAMPLE_END = "<!-- example:start -->", "<!-- example:end -->"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(spec) -> str:
    kind = str(spec.type)
    return kind.split("@")[0].removeprefix("system.") if "@" in kind else kind


def _output_descriptions(component) -> dict[str, str]:
    """Outputs are described in the function's ``Args:`` (KFP keeps only inputs' there)."""
    import docstring_parser

    func = getattr(component, "python_func", None)
    doc = docstring_parser.parse((func.__doc__ if func else "") or "")
    return {p.arg_name: " ".join((p.description or "").split()) for p in doc.params}


def component_markdown(name: str, component, where: str) -> str:
    spec = component.component_spec
    summary = (spec.description or "").strip().splitlines()[0].replace("``", "`")
    lines = [
        f"### `{name}`",
        "",
        summary,
        "",
        f'`{where}`, or `components.load_component_from_file("DIR/{name}.yaml")`',
        "",
        "| input | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for input_name, s in (spec.inputs or {}).items():
        default = json.dumps(s.default) if s.optional and s.default is not None else ""
        if s.optional and s.default is None and not default:
            default = "optional"
        lines.append(
            f"| `{input_name}` | {_type(s)} | {_cell(default)} | {_cell(s.description or '')} |"
        )
    outputs = spec.outputs or {}
    if outputs:
        said = _output_descriptions(component)
        lines += ["", "| output | type | meaning |", "|---|---|---|"]
        for output_name, s in outputs.items():
            text = s.description or said.get(output_name, "")
            if output_name == "Output" and not text:
                text = "The step's return value."
            lines.append(f"| `{output_name}` | {_type(s)} | {_cell(text)} |")
    return "\n".join(lines)


def components_markdown() -> str:
    """The block between the markers of docs/components.md."""
    from tfopt.pipelines.compile import component_imports, components

    imports = component_imports()
    found = components()
    index = ", ".join(f"[`{n}`](#{n})" for n in found)
    parts = [f"{len(found)} components: {index}."]
    parts += [component_markdown(n, c, imports[n]) for n, c in found.items()]
    return "\n\n".join(parts)


def block(text: str, start: str = START, end: str = END) -> str:
    """The text of a document between two markers."""
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} block")
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def example_source(text: str) -> str:
    """The Python of the example pipeline in docs/components.md (its fenced block)."""
    body = block(text, EXAMPLE_START, EXAMPLE_END)
    return body.removeprefix("```python").removesuffix("```").strip() + "\n"
