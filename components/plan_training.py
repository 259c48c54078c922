"""Check a training request (target, replicas, GPUs, accelerator) before anything runs."""

from typing import NamedTuple

from kfp import dsl

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.launch.validate import TrainingRequest


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TrainingRequest)
def plan_training(
    target: str = "local",
    replicas: int = 1,
    gpus_per_replica: int = 0,
    accelerator_type: str = "NVIDIA_TESLA_T4",
) -> NamedTuple("Plan", [("node_selector", dict), ("gke_accelerator", str)]):
    """Fail with a clear message on a bad request; return the GPU node selector."""
    from collections import namedtuple

    from tfopt.launch import validate

    request = validate.TrainingRequest(target, replicas, gpus_per_replica, accelerator_type)
    plan = namedtuple("Plan", ["node_selector", "gke_accelerator"])
    return plan(request.node_selector(), request.gke_accelerator)
