"""Independent steps of a local run at the same time, on kfp's own local engine.

kfp 2.17's local runner runs the tasks of a DAG one at a time: its
``enhanced_dag_orchestrator.run_enhanced_dag`` (and ``dag_orchestrator.run_dag`` for a DAG
without control flow) pops them from a topological sort (only ``dsl.ParallelFor``
iterations overlap, 2 at most). This module gives those functions a ready-task scheduler
and nothing else: the same signature, kfp's own ``execute_task``
for every task (cache, dispatch, logs), kfp's condition evaluator, IOStore and
dependency-failure rule. A task starts as soon as the tasks it depends on are done and
a slot is free; a DAG with exit handlers or ``ParallelFor`` keeps kfp's own loop.

- Slots: ``parallelism`` leaf tasks at once, across nested DAGs (a sub-pipeline task
  takes no slot; its tasks do). Steps that measure time (``evaluate``: latency) run
  alone: they wait until nothing runs, and nothing starts while they run.
- Outputs reach the IOStore from the scheduling thread only, in completion order; a
  task reads only its dependencies' outputs, so the order changes nothing.
- A failed task stops the run cleanly: nothing new starts, the running tasks finish
  (their outputs whole, cached for a re-run), the rest is logged as skipped.
- Ctrl-C (or any error in the scheduler) interrupts the running steps and waits for them.
- Threads: each step's TensorFlow intra- and inter-op pools (``TF_NUM_INTRAOP_THREADS``,
  ``TF_NUM_INTEROP_THREADS``, in the step's own environment through its executor spec)
  get the cores divided by the number of tasks that may run beside it in the DAG (those
  neither before nor after it), and all cores for a step that runs alone. The rule reads
  the DAG, not the schedule nor ``parallelism``: a sequential and a concurrent run give
  each step the same threads, so the same numbers (TensorFlow's float sums depend on
  the thread count: measured 1e-8 apart on the digits CNN).

:func:`concurrent_dags` installs it for the duration of a run and restores kfp's.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

# kfp.local logs its task events on the root logger, and RunLog reads them there: so do we
_KFP_LOG = logging.getLogger()

# Steps that must run alone: their figures are timings (latency, throughput).
EXCLUSIVE_COMPONENTS = frozenset({"comp-evaluate"})
_POLL_S = 0.05  # how often the scheduler looks for free slots freed by nested DAGs


class Slots:
    """``total`` leaf tasks at once; an exclusive task takes them all."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"parallelism={total}: expected >= 1")
        self.total = total
        self.used = 0
        self.exclusive = False
        self._lock = threading.Lock()

    def take(self, exclusive: bool = False) -> bool:
        with self._lock:
            if self.exclusive or (exclusive and self.used) or self.used >= self.total:
                return False
            self.used = self.total if exclusive else self.used + 1
            self.exclusive = exclusive
            return True

    def give(self, exclusive: bool = False) -> None:
        with self._lock:
            self.used = 0 if exclusive else self.used - 1
            self.exclusive = False


_slots: Slots | None = None  # set by concurrent_dags() for the run


@contextlib.contextmanager
def concurrent_dags(parallelism: int) -> Iterator[Slots]:
    """Run every DAG of the kfp.local runs started inside with ``parallelism`` slots."""
    global _slots
    from kfp.local import logging_utils
    from kfp.local.orchestrator import dag_orchestrator as kfp_plain
    from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dags

    original, indented = kfp_dags.run_enhanced_dag, logging_utils.indented_print
    plain, logger_context = kfp_plain.run_dag, logging_utils.local_logger_context
    _slots = Slots(parallelism)
    # kfp picks its plain loop for a DAG without control flow, the enhanced one otherwise
    kfp_dags.run_enhanced_dag = _run_dag_with(original)
    kfp_plain.run_dag = _run_dag_with(plain)
    # kfp indents a step's output by swapping builtins.print; from two threads at once the
    # swaps interleave and the last restore leaves print indented: indent per thread instead
    logging_utils.indented_print = _indented_print
    # the same for its swap of the root logger's handlers: the first task in sets them,
    # the last one out restores them
    logging_utils.local_logger_context = _shared(logger_context)
    try:
        with _print_indented_per_thread():
            yield _slots
    finally:
        kfp_dags.run_enhanced_dag = original
        kfp_plain.run_dag = plain
        logging_utils.indented_print = indented
        logging_utils.local_logger_context = logger_context
        _slots = None


_indent = threading.local()


def _shared(context_manager):
    """``context_manager`` entered once however many threads are inside it at a time."""
    lock = threading.Lock()
    state: dict[str, Any] = {"inside": 0, "cm": None}

    @contextlib.contextmanager
    def shared(*args, **kwargs):
        with lock:
            if state["inside"] == 0:
                state["cm"] = context_manager(*args, **kwargs)
                state["cm"].__enter__()
            state["inside"] += 1
        try:
            yield
        finally:
            with lock:
                state["inside"] -= 1
                if state["inside"] == 0:
                    state["cm"].__exit__(None, None, None)

    return shared


@contextlib.contextmanager
def _indented_print(num_spaces: int = 4) -> Iterator[None]:
    """kfp's ``logging_utils.indented_print``, for this thread only."""
    before = getattr(_indent, "spaces", 0)
    _indent.spaces = before + num_spaces
    try:
        yield
    finally:
        _indent.spaces = before


@contextlib.contextmanager
def _print_indented_per_thread() -> Iterator[None]:
    import builtins

    original = builtins.print

    def indented(*args, **kwargs):
        spaces = getattr(_indent, "spaces", 0)
        if spaces:
            original(" " * spaces, end="", file=kwargs.get("file"))
        return original(*args, **kwargs)

    builtins.print = indented
    try:
        yield
    finally:
        builtins.print = original


def _run_dag_with(kfp_run_dag):
    def run_dag(**kwargs: Any):
        dag_spec = kwargs["dag_component_spec"].dag
        if _slots is None or not _plain(dag_spec):
            return kfp_run_dag(**kwargs)
        return _Scheduler(kwargs, _slots).run()

    return run_dag


def _plain(dag_spec) -> bool:
    """No exit handler, no ParallelFor: the tasks a ready-task scheduler may reorder."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    completed = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy
    return not any(
        t.WhichOneof("iterator")
        or t.trigger_policy.strategy == completed.ALL_UPSTREAM_TASKS_COMPLETED
        for t in dag_spec.tasks.values()
    )


class _Scheduler:
    """One DAG run: the body of kfp's ``run_enhanced_dag`` with a ready-task loop."""

    def __init__(self, kwargs: dict[str, Any], slots: Slots) -> None:
        from kfp.local import io
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        self.kw = kwargs
        self.slots = slots
        spec = kwargs["dag_component_spec"]
        self.spec = spec
        self.io_store = io.IOStore(parent=kwargs.get("parent_io_store"))
        arguments = OrchestratorUtils.join_user_inputs_and_defaults(
            dag_arguments=kwargs["dag_arguments"], dag_inputs_spec=spec.input_definitions
        )
        for key, value in arguments.items():
            self.io_store.put_parent_input(key, value)
        self.tasks = dict(spec.dag.tasks)
        components = kwargs["components"]
        self.is_dag = {
            n: components[t.component_ref.name].WhichOneof("implementation") == "dag"
            for n, t in self.tasks.items()
        }
        self.failed: set[str] = set()
        self.done: set[str] = set()

    def run(self):
        from kfp.local import graph_utils, status
        from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils

        # kfp's own order (a stack: the next task is at the end), used to break ties
        pending = list(reversed(graph_utils.topological_sort_tasks(self.tasks)))
        running: dict[futures.Future, tuple[str, bool]] = {}
        stopped = False
        pool = futures.ThreadPoolExecutor(max_workers=len(self.tasks) or 1,
                                          thread_name_prefix="tfopt-task")  # fmt: skip
        try:
            while pending or running:
                if not stopped:
                    self._start_ready(pending, running, pool)
                elif pending and not running:
                    self._skip_rest(pending)
                if not running:
                    if pending and not stopped:
                        time.sleep(_POLL_S)  # the slots are held by another DAG's tasks
                    continue
                finished, _ = futures.wait(
                    running, timeout=_POLL_S, return_when=futures.FIRST_COMPLETED
                )
                for fut in finished:
                    name, slot = running.pop(fut)
                    if slot is not None:
                        self.slots.give(slot)
                    if not self._record(name, *fut.result()):
                        stopped = True
        except BaseException:
            _interrupt_steps()
            raise
        finally:
            pool.shutdown(wait=True)
        if self.failed:
            return {}, status.Status.FAILURE
        outputs = OrchestratorUtils.get_dag_outputs(
            dag_outputs_spec=self.spec.dag.outputs, io_store=self.io_store
        )
        return outputs, status.Status.SUCCESS

    def _start_ready(self, pending: list[str], running: dict, pool) -> None:
        from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dags

        waiting = {name for name, _ in running.values()} | set(pending)
        for name in list(pending):
            task = self.tasks[name]
            if any(dep in waiting for dep in task.dependent_tasks):
                continue
            failed_deps = sorted(d for d in task.dependent_tasks if d in self.failed)
            if failed_deps:  # kfp's rule and message: skip what depends on a failure
                _KFP_LOG.info(f"Skipping task {name}: upstream task(s) {failed_deps} failed.")
                self._fail(name, pending)
                continue
            condition = task.trigger_policy.condition
            if condition and not kfp_dags.ConditionEvaluator().evaluate_condition(
                condition, self.io_store
            ):
                _KFP_LOG.info(f"Skipping conditional task {name} (condition evaluated to False)")
                pending.remove(name)
                self.done.add(name)
                waiting.discard(name)
                continue
            slot = None
            if not self.is_dag[name]:
                slot = task.component_ref.name in EXCLUSIVE_COMPONENTS
                if not self.slots.take(slot):
                    if slot:
                        break  # it waits for the others to end; none starts before it
                    continue
            pending.remove(name)
            running[pool.submit(self._execute, name)] = (name, slot)

    def _execute(self, name: str):
        from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dags

        kw = self.kw
        executors = kw["executors"]
        if not self.is_dag[name]:
            threads = _threads(name, self.tasks, self._never_runs)
            executors = _with_threads(executors, kw["components"], self.tasks[name], threads)
        return kfp_dags.execute_task(
            task_name=name,
            task_spec=self.tasks[name],
            pipeline_resource_name=kw["pipeline_resource_name"],
            components=kw["components"],
            executors=executors,
            io_store=self.io_store,
            pipeline_root=kw["pipeline_root"],
            runner=kw["runner"],
            unique_pipeline_id=kw["unique_pipeline_id"],
            fail_stack=kw["fail_stack"],
        )

    def _never_runs(self, name: str) -> bool:
        """The task's condition is already known false (it is on the parameters or on
        outputs that exist): a branch not taken runs beside nothing."""
        from kfp.local.orchestrator import enhanced_dag_orchestrator as kfp_dags

        condition = self.tasks[name].trigger_policy.condition
        if not condition:
            return False
        try:
            return not kfp_dags.ConditionEvaluator().evaluate_condition(condition, self.io_store)
        except Exception:  # needs an output not there yet: it may run
            return False

    def _record(self, name: str, outputs: dict, task_status) -> bool:
        """Keep a finished task's outputs; False when it failed."""
        from kfp.local import status

        ok = task_status == status.Status.SUCCESS
        self.io_store.put_task_status(name, "SUCCEEDED" if ok else "FAILED")
        if not ok:
            self.kw["fail_stack"].append(name)
            self.failed.add(name)
            return False
        for key, value in outputs.items():
            self.io_store.put_task_output(name, key, value)
        self.done.add(name)
        return True

    def _fail(self, name: str, pending: list[str]) -> None:
        pending.remove(name)
        self.failed.add(name)
        self.io_store.put_task_status(name, "FAILED")

    def _skip_rest(self, pending: list[str]) -> None:
        failed = sorted(self.failed)
        for name in list(pending):
            _KFP_LOG.info(f"Skipping task {name}: upstream task(s) {failed} failed.")
            self._fail(name, pending)


def usable_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota. A
    container or CI runner held to 2 CPUs on a larger host sees the host's count in
    ``os.cpu_count()``; as many steps, each with that many threads, would thrash it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count() or 1
    quota = _cgroup_cpus(cgroup_root)
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_cpus(root: str) -> int | None:
    """CPUs of the cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``), rounded up;
    None without a quota."""
    for quota_file, period_file in (
        ("cpu.max", None),
        ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"),
    ):
        try:
            with open(os.path.join(root, quota_file)) as fh:
                fields = fh.read().split()
            if period_file:
                with open(os.path.join(root, period_file)) as fh:
                    fields.append(fh.read().strip())
            quota, period = fields[0], int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
        if quota in ("max", "-1") or period <= 0:
            return None
        return max(1, -(-int(quota) // period))
    return None


def _threads(name: str, tasks: dict, never_runs) -> int:
    """TensorFlow threads for task ``name``: the cores over the tasks that may run beside
    it (neither its ancestors nor its descendants, nor a branch known not taken), all of
    them when it runs alone."""
    cores = usable_cores()
    if tasks[name].component_ref.name in EXCLUSIVE_COMPONENTS:
        return cores
    before = _closure(name, {n: list(t.dependent_tasks) for n, t in tasks.items()})
    after = _closure(name, _dependents(tasks))
    beside = [
        n for n in tasks if n != name and n not in before and n not in after and not never_runs(n)
    ]
    return max(1, cores // min(cores, 1 + len(beside)))


def _dependents(tasks: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {n: [] for n in tasks}
    for n, t in tasks.items():
        for dep in t.dependent_tasks:
            out.setdefault(dep, []).append(n)
    return out


def _closure(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, []))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(edges.get(n, []))
    return seen


def _with_threads(executors: dict, components: dict, task, threads: int) -> dict:
    """``executors`` with this task's executor copied and its thread settings added."""
    label = components[task.component_ref.name].executor_label
    if executors[label].WhichOneof("spec") != "container":  # an importer: no process
        return executors
    executor = type(executors[label])()
    executor.CopyFrom(executors[label])
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        executor.container.env.add(name=var, value=str(threads))
    return {**executors, label: executor}


def _interrupt_steps() -> None:
    """SIGINT to this process's step processes (kfp's ``-m kfp.dsl.executor_main``
    children), as Ctrl-C on a terminal would: each ends as an interrupted step."""
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = fh.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if ppid == me and b"kfp.dsl.executor_main" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGINT)
