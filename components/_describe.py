"""What each component input means, written once, where the setting is declared.

KFP copies a component's docstring ``Args:`` into the compiled YAML
(``inputDefinitions.parameters.<name>.description``), which the Vertex AI and KFP
consoles show beside each field of the run form. An input that feeds a field of a
library config (``IngestConfig.source``, ``TrainConfig.epochs`` ...) takes that field's
entry of the config's ``Attributes:`` docstring; :func:`inputs` writes those lines into the
component's ``Args:`` when the component is defined, so the text lives once, in the
library. A component describes in its own ``Args:`` only the inputs that are its own
(``namespace``, ``blessed`` ...); the artifacts every step hands on are described here
(:data:`ARTIFACTS`). The pipelines' parameters take their text from the inputs they feed
(``pipelines/parameters.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping

import docstring_parser

# The artifacts and mappings steps hand each other: one text per input name.
ARTIFACTS = {
    "dataset": "The ingested dataset (TFRecord shards per split and schema.json, "
    "from the ingest step).",
    "model": "A SavedModel directory with a serving_default signature (tfopt's model hand-off).",
    "hyperparameters": "The tune step's best hyperparameters (JSON); they override the matching "
    "training settings. A skipped tune step's output changes nothing.",
    "train_config": "The training settings as one mapping of TrainConfig / ModelConfig field "
    "names (the train-config step makes it from the pipeline's parameters; absent names "
    "keep their defaults).",
}


def clean(text: str) -> str:
    """One line of plain text from a docstring entry: reST markup dropped, a capital first
    letter (unless it starts with a literal) and a final full stop."""
    text = " ".join(text.split())
    # a capital for a word, not for a literal such as ``mlp`` or gs://
    word = re.match(r"[a-z]+(-[a-z]+)*[\s,;(]", text)
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # :class:`SearchSpace` -> SearchSpace
    text = text.replace("``", "")
    if word:
        text = text[0].upper() + text[1:]
    if text and (text[-1] not in ".!?" or (text.endswith(")") and not text.endswith(".)"))):
        text += "."
    return text


def config_docs(cls: type) -> dict[str, str]:
    """Field -> its ``Attributes:`` entry, cleaned. An entry naming several fields
    (``optimizer / learning_rate: ...``, ``cpu, memory: ...``) describes each of them."""
    out: dict[str, str] = {}
    for param in docstring_parser.parse(cls.__doc__ or "").params:
        text = clean(param.description or "")
        for name in re.split(r"\s*[/,]\s*", param.arg_name):
            if name.isidentifier() and text:
                out.setdefault(name, text)
    return out


def _source_docs(source) -> dict[str, str]:
    if isinstance(source, Mapping):
        return {k: clean(v) for k, v in source.items()}
    if isinstance(source, type) and dataclasses.is_dataclass(source):
        return config_docs(source)
    spec = getattr(source, "component_spec", None)
    if spec is not None:  # a component or a sub-pipeline: its own input descriptions
        return {k: v.description for k, v in (spec.inputs or {}).items() if v.description}
    raise TypeError(f"cannot read descriptions from {source!r}")


def describe(
    func: Callable, sources=(), rename: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """``func``'s docstring with an ``Args:`` line for every parameter, and the lines.

    A parameter ``func`` describes itself keeps its text; any other takes the text of the
    first of ``sources`` (config dataclasses, components, mappings) that describes
    ``rename.get(name, name)``, else :data:`ARTIFACTS`'. Parameters nobody describes stay
    undescribed (``tests/compile/test_descriptions.py`` names them).
    """
    doc = docstring_parser.parse(inspect.getdoc(func) or "")
    own = {p.arg_name: clean(p.description or "") for p in doc.params}
    known = [_source_docs(s) for s in sources] + [ARTIFACTS]
    args: dict[str, str] = {}
    for name in inspect.signature(func).parameters:
        if own.get(name):
            args[name] = own[name]
            continue
        field = (rename or {}).get(name, name)
        text = next((d[field] for d in known if d.get(field)), "")
        if text:
            args[name] = text
    parts = [doc.short_description or ""]
    if doc.long_description:
        parts.append(doc.long_description)
    if args:
        parts.append("Args:\n" + "".join(f"    {k}: {v}\n" for k, v in args.items()).rstrip())
    if doc.returns and doc.returns.description:
        parts.append(f"Returns:\n    {' '.join(doc.returns.description.split())}")
    return "\n\n".join(p for p in parts if p) + "\n", args


def inputs(*sources, rename: Mapping[str, str] | None = None):
    """Decorator (under ``@dsl.component``): complete the function's ``Args:`` from
    ``sources`` (see :func:`describe`) before KFP reads it."""

    def wrap(func):
        func.__doc__, _ = describe(func, sources, rename)
        return func

    return wrap
