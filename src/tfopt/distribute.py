"""Distribution strategy, GPU set-up and TF_CONFIG handling.

One device, ``MirroredStrategy`` over all local GPUs, or
``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from tfopt.errors import ConfigError

log = logging.getLogger(__name__)

_TASK_TYPES = ("chief", "worker", "evaluator", "ps")


@dataclass(frozen=True)
class ClusterSpec:
    """The parts of TF_CONFIG that decide strategy and who writes outputs."""

    num_workers: int
    task_type: str
    task_index: int

    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        # With an explicit chief only it writes; otherwise worker 0 does (Keras' rule).
        return self.task_type == "chief" or (
            self.task_type == "worker" and self.task_index == 0 and not self.has_chief
        )


def parse_tf_config(raw: str | None = None) -> ClusterSpec:
    """Parse and check ``TF_CONFIG`` (the environment's when ``raw`` is None)."""
    raw = os.environ.get("TF_CONFIG", "") if raw is None else raw
    if not raw.strip():
        return ClusterSpec(1, "worker", 0)
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict):
        raise ConfigError("TF_CONFIG must be a JSON object with a 'cluster' object")
    cluster, task = cfg["cluster"], cfg.get("task", {})
    for kind, hosts in cluster.items():
        if kind not in _TASK_TYPES:
            raise ConfigError(
                f"TF_CONFIG cluster has unknown task type {kind!r}; "
                f"allowed: {', '.join(_TASK_TYPES)}"
            )
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise ConfigError(f"TF_CONFIG cluster.{kind} must be a list of 'host:port' strings")
    if "ps" in cluster:
        raise ConfigError(
            "TF_CONFIG names parameter servers; tfopt trains with "
            "MultiWorkerMirroredStrategy (chief and workers only)"
        )
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ConfigError(
            f"TF_CONFIG task.type={task.get('type') if isinstance(task, dict) else task!r}"
            f" must name a task type of the cluster ({', '.join(cluster)})"
        )
    index = task.get("index", 0)
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not (0 <= index < len(cluster[task["type"]]))
    ):
        raise ConfigError(
            f"TF_CONFIG task.index={index!r} is out of range for "
            f"{len(cluster[task['type']])} {task['type']} task(s)"
        )
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return ClusterSpec(workers, task["type"], index, has_chief="chief" in cluster)


def configure_gpus(memory_growth: bool = True) -> int:
    """Turn on memory growth (so co-located processes share a GPU); return the GPU count."""
    from tfopt._keras import tf

    gpus = tf.config.list_physical_devices("GPU")
    if memory_growth:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialized: keep going with what is set
                log.warning("GPU %s already initialized; memory growth unchanged", gpu.name)
    return len(gpus)


def choose_strategy(memory_growth: bool = True):
    """Pick the strategy for this process from TF_CONFIG and the visible GPUs."""
    from tfopt._keras import tf

    spec = parse_tf_config()
    num_gpus = configure_gpus(memory_growth)
    if spec.num_workers > 1:
        log.info(
            "MultiWorkerMirroredStrategy: %d workers, this is %s:%d",
            spec.num_workers,
            spec.task_type,
            spec.task_index,
        )
        return tf.distribute.MultiWorkerMirroredStrategy(), spec
    if num_gpus > 1:
        log.info("MirroredStrategy over %d GPUs", num_gpus)
        return tf.distribute.MirroredStrategy(), spec
    # The default strategy places ops on the one GPU if any; BackupAndRestore
    # does not support OneDeviceStrategy.
    return tf.distribute.get_strategy(), spec
