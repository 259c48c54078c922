"""Select component: apply the policy to the evaluations, write summary.json, bless or not."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def select(
    evaluations: Input[Artifact],
    summary: Output[Artifact],
    pipeline_name: str = "tfopt-optimize",
    baseline: str = "baseline",
    max_accuracy_drop: float = 1.0,
    max_size_bytes: int = 0,
    max_latency_ms_p99: float = 0.0,
    objective: str = "smallest",
) -> NamedTuple("SelectOutputs", [("blessed", bool), ("selected", str)]):
    """Pick one candidate under the policy; ``blessed`` gates deployment."""
    from collections import namedtuple

    from tfopt import fsutil
    from tfopt import select as select_lib

    evals = fsutil.read_json(evaluations.path)
    policy = select_lib.SelectionPolicy(max_accuracy_drop=max_accuracy_drop,
                                        max_size_bytes=max_size_bytes,
                                        max_latency_ms_p99=max_latency_ms_p99,
                                        objective=objective)
    result = select_lib.select_candidate(evals["candidates"], baseline, policy)
    payload = select_lib.summarize(pipeline_name, evals["dataset"], baseline, result)
    fsutil.write_json(summary.path, payload)
    summary.metadata.update({"selected": result.selected or "", "blessed": result.blessed})
    outputs = namedtuple("SelectOutputs", ["blessed", "selected"])
    return outputs(result.blessed, result.selected or "")
