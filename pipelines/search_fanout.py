"""The search fan-out (issue 32): a technique's search trials as parallel tasks on a cluster.

``tfopt compile --search-fanout`` compiles the optimize pipeline with, for each variant
whose technique has a strength knob, instead of its one step (which bisects the knob
inside itself, as a local run does):

    <task>-search-values -> ParallelFor(values, parallelism) { <task>-trial }
        -> <task>-search-pick (over dsl.Collected trials) -> <task> (the knob at the pick)

KFP's own engine runs the loop (``iteratorPolicy.parallelismLimit`` in the YAML), on
Kubeflow Pipelines and on Vertex AI Pipelines alike. With ``search`` off, or the variant
off, the loop has one no-op iteration (a loop over no item is one kfp.local cannot
collect), the pick passes the configured value on and the variant's step is what it is
without the fan-out (a skipped output when disabled): cheap no-op steps, as a disabled
variant's is. The trial, the rule and the record are ``tfopt.compression.search``'s.
"""

from __future__ import annotations

from kfp import dsl

from tfopt import registry
from tfopt.compression import search
from tfopt.pipelines import fanout_rules, optimize
from tfopt.pipelines.parameters import with_described_parameters


def pipeline(name: str, parallelism: int = 0):
    """The pipeline ``name`` (only ``optimize`` has searched variants) with its searches
    fanned out, at most ``parallelism`` trials of one search at a time (0 = no limit)."""
    fanout_rules.check(name, True, parallelism)
    base = optimize.optimize
    token = optimize.VARIANT_STEP.set(lambda v, inputs: variant_step(v, inputs, parallelism))
    try:
        func = dsl.pipeline(
            name=optimize.PIPELINE_NAME,
            description=f"{base.description} Search trials run in parallel (dsl.ParallelFor).",
        )(base.pipeline_func)
    finally:
        optimize.VARIANT_STEP.reset(token)
    return with_described_parameters(optimize.GROUPS)(func)


def variant_step(variant: registry.Variant, inputs: dict, parallelism: int = 0):
    """``variant``'s step, its search fanned out when its technique has a knob."""
    from tfopt.components import compress, search_trial

    t = registry.get_technique(variant.technique)
    knob = search.knob(t)
    if knob is None:
        return compress.COMPONENTS[t.name](**inputs)
    steps = search_trial.fanout(t.name)
    names = ("model", "search", "search_trials", "objective", "enabled", knob.name)
    values = steps.values(**{k: inputs[k] for k in names})
    values.set_display_name(f"{variant.task}-search-values")
    loop = dsl.ParallelFor(values.output, parallelism=parallelism, name=f"{variant.task}-search")
    with loop as value:
        trial = steps.trial(**{**inputs, knob.name: value})
        trial.set_display_name(f"{variant.task}-trial")
    pick = steps.pick(
        trials=dsl.Collected(trial.output),
        max_accuracy_drop=inputs["max_accuracy_drop"],
        **{knob.name: inputs[knob.name]},
    ).set_display_name(f"{variant.task}-search-pick")
    return steps.searched(
        **{**inputs, knob.name: pick.outputs["Output"], "search": False},
        search_record=pick.outputs["search_record"],
    )
