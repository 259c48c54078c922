"""The bodies of the search fan-out's components (``components/search_trial.py``): the
trial values, one trial, the pick, and the record the variant's own step then carries.
The search itself is ``tfopt.compression.search``'s; nothing here decides."""

from __future__ import annotations

import json


def _technique(name: str):
    from tfopt import registry
    from tfopt.compression import search, techniques  # noqa: F401 - registers every technique

    t = registry.get_technique(name)
    return t, search.knob(t)


def _searching(technique: str, args: dict) -> bool:
    """Whether a search runs: on, the variant enabled, a contender and its base not
    skipped (a search cut for the objective runs no trial either: ``pick`` records the
    cut)."""
    from tfopt.components import _util

    skipped = args["model"].metadata.get("skipped")
    idle = "variant" in args and _util.not_contending(args, _technique(technique)[0])
    return bool(args["search"] and args.pop("enabled") and not skipped and not idle)


def _cut(technique: str, objective: str) -> str:
    """Why the search is cut before any trial for the ``objective`` (``search.cut``), or ""."""
    from tfopt.compression import search

    t, _ = _technique(technique)
    return search.cut(t, t.make_config({"objective": objective}))


def values(technique: str, knob: str, args: dict) -> list:
    """The ``knob`` values to try (``search.grid``). Without a search (off, the variant
    disabled or its base skipped) or a search cut for the objective, the configured value
    alone, whose trial is a no-op: a loop over no item is one that kfp.local cannot
    collect."""
    if not _searching(technique, args) or _cut(technique, args["objective"]):
        return [args[knob]]
    from tfopt.compression import search

    _, setting = _technique(technique)
    return search.grid(setting, args["search_trials"])


def trial(technique: str, args: dict) -> str:
    """One trial, its record as JSON (exact types: KFP passes a dict as floats); a
    technique that does not fit the model records why instead, and without a search the
    record says ``skipped``, with a search cut for the objective ``cut`` and why (nothing
    is imported or trained)."""
    if not _searching(technique, args):
        return json.dumps({"skipped": True})
    cut = _cut(technique, args["objective"])
    if cut:
        return json.dumps({"cut": cut})
    from tfopt.compression import search
    from tfopt.errors import ModelError

    t, setting = _technique(technique)
    model, dataset, variant = args.pop("model"), args.pop("dataset"), args.pop("variant")
    value = args.pop(setting.name)  # this iteration's value
    config = t.make_config(args)
    try:
        record = search.fanout_trial(t, model.path, dataset.path, config, value)
    except ModelError as exc:
        record = {"not_applicable": str(exc)}
    print(f"{variant}: {setting.name}={value}: {record}")
    return json.dumps(record)


def pick(technique: str, trials: list, args: dict, search_record):
    """The value the variant is made with: the search's choice over ``trials`` (the
    collected records), with its record written to ``search_record``;
    without trials the configured value, and the record says ``skipped`` (or ``cut``, why)."""
    from tfopt import fsutil
    from tfopt.components import _util
    from tfopt.compression import search

    t, setting = _technique(technique)
    records = [json.loads(r) for r in trials]
    cut = next((r["cut"] for r in records if "cut" in r), "")
    if cut:
        fsutil.write_json(search_record.path, search.cut_record(setting, t.make_config(args), cut))
        return args[setting.name]
    made = [r for r in records if not {"skipped", "not_applicable"} & set(r)]
    if not made:
        _util.mark_skipped(search_record, skip_reason="no search trial ran")
        return args[setting.name]
    record = search.pick(t, t.make_config(args), made)
    fsutil.write_json(search_record.path, record)
    return record["chosen"]


def attach(t, outcome, search_record):
    """``outcome`` with the fan-out's search record (metrics, note, the model's ``search``
    entry, as the bisection gives them); unchanged when no search ran."""
    from tfopt.compression import search

    with open(search_record.path, encoding="utf-8") as fh:
        record = json.load(fh)
    if record.get("skipped"):
        return outcome
    setting = search.knob(t)
    if record.get("cut"):
        return search.with_cut(outcome, setting, record)
    return search.searched(outcome, setting, record, how=" in parallel (dsl.ParallelFor)")
