"""Independent steps of a local run at the same time (client/concurrent_dag.py): on kfp's
local runner with small stdlib-only components, each step a real subprocess.

Each step records when it ran (a file of start and end times); overlap and order are
read from those, never from sleeps or timers: a step that may run beside another waits
until one has started (however long a loaded machine takes to start it).
"""

import json
import os

import pytest
from kfp import dsl, local

from tfopt.client import concurrent_dag
from tfopt.client.concurrent_dag import Slots, concurrent_dags

pytestmark = pytest.mark.timeout(600)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def work(
    log_dir: str,
    name: str,
    after: str = "",
    fail: bool = False,
    siblings: str = "",
    wait_s: float = 0.0,
) -> str:
    """Record start, wait until one of ``siblings`` has started too (at most ``wait_s``:
    a loaded machine may take seconds to start a process), record end."""
    import json
    import os
    import time

    start = time.time()
    path = os.path.join(log_dir, name + ".json")
    with open(path + ".start", "w") as fh:
        fh.write(str(start))
    starts = [os.path.join(log_dir, s + ".json.start") for s in siblings.split(",") if s]
    while starts and time.time() < start + wait_s and not any(map(os.path.exists, starts)):
        time.sleep(0.02)
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    with open(path, "w") as fh:
        json.dump({"start": start, "end": time.time(), "threads": threads}, fh)
    if fail:
        raise ValueError(f"step {name} fails on purpose")
    return name + after


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def evaluate(log_dir: str, x: str, y: str, z: str) -> str:
    """Stands for tfopt's evaluate: its component name makes it exclusive."""
    import json
    import os
    import time

    start = time.time()
    time.sleep(0.5)
    with open(os.path.join(log_dir, "evaluate.json"), "w") as fh:
        json.dump({"start": start, "end": time.time(), "threads": ""}, fh)
    return x + y + z


@dsl.pipeline(name="fan-out")
def fan_out(log_dir: str, fail_b: bool = False, wait_s: float = 300.0) -> str:
    """b, c and d each wait for one of the others to start: where two may run at once,
    the first two overlap; one at a time, the first waits ``wait_s`` in vain."""
    a = work(log_dir=log_dir, name="a")
    b = work(log_dir=log_dir, name="b", after=a.output, fail=fail_b, siblings="c,d", wait_s=wait_s)
    c = work(log_dir=log_dir, name="c", after=a.output, siblings="b,d", wait_s=wait_s)
    d = work(log_dir=log_dir, name="d", after=a.output, siblings="b,c", wait_s=wait_s)
    joined = evaluate(log_dir=log_dir, x=b.output, y=c.output, z=d.output)
    return joined.output


def _times(log_dir) -> dict:
    return {
        f[:-5]: json.load(open(os.path.join(log_dir, f)))
        for f in os.listdir(log_dir)
        if f.endswith(".json")
    }


def _most_at_once(runs: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def kfp_local(tmp_path):
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    return str(logs)


def test_independent_steps_overlap_and_dependencies_hold(kfp_local):
    with concurrent_dags(2):
        task = fan_out(log_dir=kfp_local)
    assert task.output == "bacada"  # b, c, d each got a's output, joined in order
    t = _times(kfp_local)
    for step in "bcd":
        assert t[step]["start"] >= t["a"]["end"]  # after what it depends on
    assert _most_at_once([t[s] for s in "bcd"]) == 2  # two at once, never three: two slots
    # the exclusive step ran alone, after all it depends on
    assert all(t["evaluate"]["start"] >= t[s]["end"] for s in "abcd")
    # threads: a runs alone (2 cores / 1), b, c, d beside two others (at least 1 each)
    cores = concurrent_dag.usable_cores()
    assert t["a"]["threads"] == str(cores)
    assert t["b"]["threads"] == str(max(1, cores // min(cores, 3)))


def test_one_slot_runs_them_one_at_a_time(kfp_local):
    with concurrent_dags(1):
        task = fan_out(log_dir=kfp_local, wait_s=1.0)
    assert task.output == "bacada"
    t = _times(kfp_local)
    assert _most_at_once(list(t.values())) == 1
    # the same threads as the concurrent run: the rule reads the DAG, not the slots
    cores = concurrent_dag.usable_cores()
    assert t["b"]["threads"] == str(max(1, cores // min(cores, 3)))


def test_a_failing_step_stops_the_run_and_is_named(kfp_local):
    with concurrent_dags(2), pytest.raises(RuntimeError, match="work-2"):
        fan_out(log_dir=kfp_local, fail_b=True)
    t = _times(kfp_local)
    assert "evaluate" not in t  # nothing after the failure started
    # kfp's own printing is whole again afterwards (its per-task indentation undone)
    import builtins

    assert builtins.print is print


@pytest.mark.parametrize(
    ("files", "cpus"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # cgroup v2: 1.5 CPUs, rounded up
        ({"cpu.max": "max 100000\n"}, None),  # no quota
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbled\n"}, None),
        ({}, None),
    ],
)
def test_a_cgroup_quota_caps_the_cores(tmp_path, files, cpus):
    """A CI runner or container held to N CPUs on a larger host: N steps, N threads."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert concurrent_dag._cgroup_cpus(str(tmp_path)) == cpus
    affinity = len(os.sched_getaffinity(0))
    assert concurrent_dag.usable_cores(str(tmp_path)) == min(affinity, cpus or affinity)


def test_slots_take_and_give():
    slots = Slots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.give()
    assert not slots.take(exclusive=True)  # one still runs
    slots.give()
    assert slots.take(exclusive=True) and not slots.take()
    slots.give(exclusive=True)
    assert slots.take()
    with pytest.raises(ValueError, match="parallelism=0"):
        Slots(0)


def test_kfps_own_functions_and_the_root_handlers_are_back_after_the_run(kfp_local):
    import logging

    from kfp.local import logging_utils
    from kfp.local.orchestrator import dag_orchestrator as kfp_plain
    from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dags

    def kfp_state():
        return (
            kfp_dags.run_enhanced_dag,
            kfp_plain.run_dag,
            logging_utils.indented_print,
            logging_utils.local_logger_context,
            list(logging.getLogger().handlers),
        )

    before = kfp_state()
    with concurrent_dags(2):
        assert kfp_dags.run_enhanced_dag is not before[0]
        fan_out(log_dir=kfp_local)
    assert kfp_state() == before  # and the root logger's handlers are the ones it had
    assert concurrent_dag._slots is None
