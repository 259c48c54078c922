"""The search fan-out's components (``pipelines/search_fanout.py``), generated per technique
with a strength knob; built only when a pipeline is compiled with ``--search-fanout``.

- ``<technique>_search_values``: the knob values to try, typed as the knob is (without a
  search, the configured value, whose trial is a no-op);
- ``<technique>_trial``: one trial, one ``dsl.ParallelFor`` iteration, the knob input fed
  the iteration's value; returns the trial's record (JSON);
- ``<technique>_search_pick``: the value the search chooses over the collected records,
  and the ``search`` record;
- ``<technique>_searched``: the technique's own component with one input more, the pick's
  record, which the variant's model then carries as the bisection's does.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from tfopt import registry
from tfopt.components import _generate, compress
from tfopt.components._generate import Param
from tfopt.compression import search


class Fanout(NamedTuple):
    """One technique's fan-out components."""

    values: Any
    trial: Any
    pick: Any
    searched: Any


# the outputs of the technique's component: a trial has its inputs only
_OUTPUTS = ("compressed_model", "metrics", "tensorboard")


@functools.cache
def fanout(technique: str) -> Fanout:
    """The fan-out components of ``technique`` (which has a knob)."""
    t = registry.get_technique(technique)
    knob = search.knob(t)
    if knob is None:
        raise ValueError(f"{technique} has no strength knob to search")
    own = {s.name: _generate.from_setting(s) for s in t.settings}
    enabled = next(p for p in compress.inputs(t) if p.name == "enabled")
    call = "args = dict(locals())\nfrom tfopt.components import _search_trial\n"
    values = _generate.component(
        f"{t.name}_search_values",
        f"The {knob.name} values a {t.name} search tries on the cluster, one trial each.",
        [
            Param("model", "Input[Model]", "The model the search starts from (skipped: none)."),
            own["search"],
            own["search_trials"],
            own["objective"],
            own[knob.name],
            enabled,
        ],
        f"{call}return _search_trial.values({t.name!r}, {knob.name!r}, args)",
        returns=f"list[{knob.type.__name__}]",
    )
    trial = _generate.component(
        f"{t.name}_trial",
        f"One trial of a {t.name} search: {knob.name} at this iteration's value.",
        [p for p in compress.inputs(t) if p.name not in _OUTPUTS],
        f"{call}return _search_trial.trial({t.name!r}, args)",
        returns="str",
    )
    pick = _generate.component(
        f"{t.name}_search_pick",
        f"The {knob.name} a {t.name} search chooses from its trials, and its record.",
        [
            Param("trials", "list[str]", "The trials' records (JSON), collected."),
            Param("search_record", "Output[Artifact]", "The search record (JSON)."),
            own[knob.name],
            own["max_accuracy_drop"],
        ],
        f"{call}trials = args.pop('trials')\nrecord = args.pop('search_record')\n"
        f"return _search_trial.pick({t.name!r}, trials, args, record)",
        returns=knob.type.__name__,
    )
    record = Param("search_record", "Input[Artifact]", "The search fan-out's record.", None)
    searched = compress.component(t, f"{t.name}_searched", (record,))
    return Fanout(values, trial, pick, searched)
