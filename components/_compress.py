"""The body of every compression component (``components/compress.py``)."""

from __future__ import annotations

from tfopt.components import _search_trial, _util


def run(technique: str, args: dict) -> None:
    """Make one variant with ``technique``: ``args`` are the component's inputs and
    outputs by name (``locals()`` of the generated component)."""
    from tfopt import registry
    from tfopt.compression import search, techniques  # noqa: F401 - registers every technique

    t = registry.get_technique(technique)
    model, dataset, out = args.pop("model"), args.pop("dataset"), args.pop("compressed_model")
    metrics, tensorboard = args.pop("metrics"), args.pop("tensorboard", None)
    idle = _util.not_contending(args, t)
    variant, enabled = args.pop("variant"), args.pop("enabled")
    searched = args.pop("search_record", None)  # the search fan-out's pick (search_trial.py)
    also = tuple(a for a in (metrics, tensorboard) if a is not None)
    base_off = model.metadata.get("skipped") and not model.metadata.get("not_contender")
    if idle and enabled and not base_off:  # in the summary as not made, with why
        _util.mark_skipped(
            out, also, variant=variant, format=t.output_format, not_contender=True,
            skip_reason=f"not a contender: {idle}",
        )  # fmt: skip
        return
    if _util.skip_if_disabled(out, variant, enabled, model, also=also):
        return
    config = t.make_config(args)  # what is left: the settings
    with _util.skip_when_not_applicable(out, variant, t.output_format, also=also):
        outcome = search.apply(  # t.apply, searched when the settings ask for it
            t,
            model.path,
            dataset.path,
            out.path,
            config,
            tensorboard.path if tensorboard is not None else None,
        )
        if searched is not None:
            outcome = _search_trial.attach(t, outcome, searched)
        _util.log_metrics(metrics, outcome.metrics)
        _util.describe_model(
            out, variant, t.output_format, base=model, notes=outcome.notes, **outcome.model
        )
        _util.ensure_exists(*also)
