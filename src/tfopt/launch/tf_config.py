"""``TF_CONFIG`` from what a JobSet pod already knows (no host list written by hand).

JobSet (and Kubeflow Trainer v2, which runs every TrainJob as a JobSet) gives
each pod ``JOBSET_NAME``, ``REPLICATED_JOB_NAME``, ``JOB_INDEX`` (which child
Job) and ``JOB_COMPLETION_INDEX`` (the pod's index inside its Indexed Job), and
a headless service makes every pod resolvable as
``<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>`` (the subdomain
defaults to the JobSet name). The launchers add how many Jobs and pods per Job
there are (``TFOPT_JOBS``, ``TFOPT_PODS_PER_JOB``); from these every pod builds
the same cluster: rank ``jobIndex * podsPerJob + podIndex``, rank 0 the chief.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping

from tfopt.errors import ConfigError

PORT = 2222
JOBSET_ENV = ("JOBSET_NAME", "REPLICATED_JOB_NAME", "JOB_INDEX", "JOB_COMPLETION_INDEX")
JOBS_ENV = "TFOPT_JOBS"
PODS_PER_JOB_ENV = "TFOPT_PODS_PER_JOB"
SUBDOMAIN_ENV = "TFOPT_SUBDOMAIN"  # set when the JobSet's network.subdomain is not its name
PORT_ENV = "TFOPT_PORT"


def in_jobset(env: Mapping[str, str]) -> bool:
    """Whether ``env`` looks like a JobSet pod's environment."""
    return all(env.get(k) for k in JOBSET_ENV)


def _int(env: Mapping[str, str], key: str, default: str | None = None, low: int = 0) -> int:
    raw = env.get(key, default)
    value: int | None
    try:
        value = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        value = None
    if value is None or value < low:
        raise ConfigError(
            f"environment {key}={raw!r} is not allowed: expected an integer >= {low} "
            "(JobSet and the tfopt launchers set it)"
        )
    return value


def hostnames(
    jobset: str, replicated_job: str, jobs: int, pods_per_job: int, subdomain: str = ""
) -> list[str]:
    """Every pod's DNS name, in rank order."""
    sub = subdomain or jobset
    return [
        f"{jobset}-{replicated_job}-{j}-{p}.{sub}" for j in range(jobs) for p in range(pods_per_job)
    ]


def from_jobset_env(env: Mapping[str, str]) -> dict:
    """The ``TF_CONFIG`` dict for this pod (chief = rank 0, then workers ``0..n-2``).

    Raises:
        ConfigError: a JobSet variable is missing or malformed, or the pod's
            indexes lie outside the declared shape.
    """
    missing = [k for k in JOBSET_ENV if not env.get(k)]
    if missing:
        raise ConfigError(
            f"environment lacks {', '.join(missing)}: expected a JobSet pod "
            f"(JobSet sets {', '.join(JOBSET_ENV)})"
        )
    jobs = _int(env, JOBS_ENV, "1", low=1)
    per_job = _int(env, PODS_PER_JOB_ENV, low=1)
    job_index = _int(env, "JOB_INDEX")
    pod_index = _int(env, "JOB_COMPLETION_INDEX")
    port = _int(env, PORT_ENV, str(PORT), low=1)
    if job_index >= jobs or pod_index >= per_job:
        raise ConfigError(
            f"JOB_INDEX={job_index}, JOB_COMPLETION_INDEX={pod_index} lie outside "
            f"{JOBS_ENV}={jobs} x {PODS_PER_JOB_ENV}={per_job}"
        )
    hosts = [
        f"{h}:{port}"
        for h in hostnames(
            env["JOBSET_NAME"],
            env["REPLICATED_JOB_NAME"],
            jobs,
            per_job,
            env.get(SUBDOMAIN_ENV, ""),
        )
    ]
    rank = job_index * per_job + pod_index
    cluster = {"chief": hosts[:1]}
    if len(hosts) > 1:
        cluster["worker"] = hosts[1:]
    task = {"type": "chief", "index": 0} if rank == 0 else {"type": "worker", "index": rank - 1}
    return {"cluster": cluster, "task": task}


def ensure_tf_config(env: MutableMapping[str, str]) -> str:
    """Set ``env["TF_CONFIG"]`` from the JobSet variables unless it is already set.

    Returns where the config came from: ``"TF_CONFIG"``, ``"jobset"`` or ``""``
    (single worker: neither is present).
    """
    if env.get("TF_CONFIG", "").strip():
        return "TF_CONFIG"
    if not in_jobset(env):
        return ""
    config = from_jobset_env(env)
    n = 1 + len(config["cluster"].get("worker", []))
    if n == 1:
        return ""  # one pod: no cluster to form
    env["TF_CONFIG"] = json.dumps(config, sort_keys=True)
    return "jobset"
