"""KFP components whose signatures are generated from the registry and the settings.

KFP reads a lightweight component twice: its signature (``inspect.signature``) and
docstring for the interface, and its source text (``inspect.getsource``), which travels
in the compiled YAML and runs in the container. So a generated component is real
Python source: it is compiled under a pseudo file name registered in ``linecache``, as
doctest and IPython do, so that ``getsource`` finds it. Each generated body is one call
into an ordinary module of ``tfopt.components``; the logic stays there.
"""

from __future__ import annotations

import linecache
from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from tfopt.components._image import COMPONENT_KWARGS
from tfopt.settings import Setting

_NAMESPACE = {
    t.__name__: t
    for t in (HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model)
} | {"Input": Input, "Output": Output}
_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One input or output of a generated component.

    Attributes:
        name: the Python parameter (and KFP input / output) name.
        annotation: its annotation as source text (``"Input[Model]"``, ``"float"``).
        description: one line for the docstring, which KFP copies into the YAML.
        default: the default; none for a required input or an output.
    """

    name: str
    annotation: str
    description: str
    default: Any = _REQUIRED

    def source(self) -> str:
        text = f"{self.name}: {self.annotation}"
        return text if self.default is _REQUIRED else f"{text} = {self.default!r}"


def from_setting(s: Setting) -> Param:
    """The component input of a setting, its allowed values in its description."""
    return Param(s.name, s.type.__name__, f"{s.description} Allowed: {s.allowed()}.", s.default)


def from_config(cls: type, *names: str, rename: dict[str, str] | None = None) -> list[Param]:
    """Component inputs for fields of a library config dataclass: the field's default and
    the description its docstring's ``Attributes:`` section gives (written once, there).
    ``rename``: field -> input name where the component calls it otherwise."""
    import dataclasses

    from tfopt.components._describe import config_docs

    docs = config_docs(cls)  # "a / b: ..." entries describe both fields
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for name in names:
        default = fields[name].default
        text = docs.get(name, "")
        if not text:
            raise ValueError(f"{cls.__name__}.{name}: no description in its docstring")
        out.append(Param((rename or {}).get(name, name), type(default).__name__, text, default))
    return out


def candidate_inputs(names: tuple[str, ...]) -> list[Param]:
    """One optional model input per variant, in evaluation order."""
    return [Param(n, "Input[Model]", f"The {n} candidate (absent or skipped: left out).", None)
            for n in names]  # fmt: skip


def component(
    name: str, summary: str, params: list[Param], body: str, returns: str = "", kwargs=None
):
    """A ``@dsl.component`` called ``name`` with ``params``, whose body is ``body`` (source
    lines, usually one call that passes ``locals()`` on)."""
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"component {name}: a parameter name repeats in {names}")
    lines = [f"def {name}("]
    lines += [f"    {p.source()}," for p in params]
    lines.append(f") -> {returns}:" if returns else "):")
    lines += [f'    """{summary}', "", "    Args:"]
    lines += [f"        {p.name}: {p.description}" for p in params]
    lines.append('    """')
    lines += [f"    {line}" for line in body.strip().splitlines()]
    source = "\n".join(lines) + "\n"
    filename = f"<tfopt-component {name}>"
    # (size, mtime None: never checked against a file, lines, name), as linecache stores them
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(_NAMESPACE)
    # dont_inherit: not this module's "from __future__ import annotations" (KFP needs real types)
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return dsl.component(**(kwargs or COMPONENT_KWARGS))(namespace[name])
