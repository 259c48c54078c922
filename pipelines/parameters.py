"""The compression parameters of a pipeline, generated from the registry.

``with_compression_parameters(before=...)`` wraps a pipeline function whose own
signature ends in ``**compression``: KFP sees the function's own parameters with, in
front of ``before``, each technique's ``enable_*`` switches and the settings it exposes
as pipeline parameters (``Setting.param``), with their types, defaults and descriptions.
A new technique's parameters appear by themselves; none is written twice.
"""

from __future__ import annotations

import functools
import inspect

from tfopt import registry
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.settings import Setting

_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _switch_description(switch: str) -> str:
    made = [v.name for v in registry.variants() if v.switch == switch]
    return f"Make the {', '.join(made)} variant(s) (and what derives from them)."


def compression_parameters(taken: set[str]) -> list[tuple[inspect.Parameter, str]]:
    """(parameter, description) per switch and exposed setting, grouped by technique, in
    registry order; names in ``taken`` (declared by the pipeline itself, e.g. ``seed``)
    are left out."""
    out: list[tuple[inspect.Parameter, str]] = []
    seen = set(taken)
    switches = registry.switches()
    for t in registry.techniques():
        for v in t.variants:
            if v.switch and v.switch not in seen:
                seen.add(v.switch)
                param = inspect.Parameter(
                    v.switch, _KW, default=switches[v.switch], annotation=bool
                )
                out.append((param, _switch_description(v.switch)))
        for s in t.settings:
            if s.param and s.param not in seen:
                seen.add(s.param)
                out.append((_parameter(s), f"{t.name}: {s.description} Allowed: {s.allowed()}."))
    return out


def _parameter(s: Setting) -> inspect.Parameter:
    return inspect.Parameter(s.param, _KW, default=s.default, annotation=s.type)


def with_compression_parameters(before: str):
    """Decorator: the pipeline function's own parameters, with the registry's compression
    parameters inserted in front of ``before`` (see the module docstring)."""

    def wrap(func):
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = compression_parameters({p.name for p in own})
        at = [p.name for p in own].index(before)
        params = own[:at] + [p for p, _ in added] + own[at:]
        names = [p.name for p in params]
        own_names = {p.name for p in own}

        @functools.wraps(func)
        def pipeline(*args, **kwargs):
            values = {**dict(zip(names, args, strict=False)), **kwargs}  # KFP: by position
            mine = {k: v for k, v in values.items() if k in own_names}
            return func(**mine, **{k: v for k, v in values.items() if k not in own_names})

        pipeline.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        pipeline.compression_parameters = tuple(p.name for p, _ in added)  # type: ignore[attr-defined]
        args_doc = "".join(f"    {p.name}: {text}\n" for p, text in added)
        pipeline.__doc__ = _merge_args(func.__doc__ or "", args_doc)
        return pipeline

    return wrap


def _merge_args(doc: str, args_doc: str) -> str:
    """``doc`` with ``args_doc`` lines added to its ``Args:`` section (made if absent)."""
    doc = inspect.cleandoc(doc)
    if "\nArgs:\n" not in doc:
        return f"{doc}\n\nArgs:\n{args_doc}"
    head, tail = doc.split("\nArgs:\n", 1)
    return f"{head}\nArgs:\n{args_doc}{tail}"


def with_described_parameters(groups: dict[str, str]):
    """Decorator over ``@dsl.pipeline``: every pipeline parameter gets a description,
    written once.

    A parameter the pipeline's docstring describes keeps that text (the switches and
    settings above, and parameters that mean more than any one input they feed). Any other
    takes the description of the component input it feeds, read from the compiled wiring
    (through condition groups; a sub-pipeline's own input description counts); one that
    feeds inputs described differently stays undescribed, which
    ``tests/compile/test_descriptions.py`` reports. Each text starts with the parameter's
    group, ``[data] ...``, so that a console listing the parameters by name still says
    which settings belong together: ``groups`` maps the first parameter of each group (in
    signature order) to its name; the parameters :func:`with_compression_parameters`
    inserted are the ``compression`` group.
    """

    def wrap(pipeline):
        spec = pipeline.pipeline_spec
        inserted = set(getattr(pipeline.pipeline_func, "compression_parameters", ()))
        group = ""
        for name, input_spec in (pipeline.component_spec.inputs or {}).items():
            group = groups.get(name, group)
            text = input_spec.description or _fed_description(spec, "root", name)
            text = " ".join(text.split())
            if text:
                text = f"[{'compression' if name in inserted else group}] {text}"
                input_spec.description = text
                spec.root.input_definitions.parameters[name].description = text
        return pipeline

    return wrap


def fed_descriptions(spec, component: str, name: str) -> dict[str, str]:
    """``task.input`` -> description, for every component input that ``component``'s
    input ``name`` feeds in ``spec`` (a PipelineSpec), through condition groups."""
    comp = spec.root if component == "root" else spec.components[component]
    out: dict[str, str] = {}
    for task_name, task in comp.dag.tasks.items():
        ref = task.component_ref.name
        child = spec.components[ref]
        for inp, value in task.inputs.parameters.items():
            if value.component_input_parameter != name:
                continue
            described = child.input_definitions.parameters[inp].description
            if described:
                out[f"{task_name}.{inp}"] = described
            elif child.dag.tasks:  # a condition group: follow the channel inside
                out.update(fed_descriptions(spec, ref, inp))
    return out


def _fed_description(spec, component: str, name: str) -> str:
    """The one description of what ``name`` feeds; "" when it feeds none, or inputs that
    say different things (describe it in the pipeline's docstring then)."""
    texts = set(fed_descriptions(spec, component, name).values())
    return texts.pop() if len(texts) == 1 else ""
