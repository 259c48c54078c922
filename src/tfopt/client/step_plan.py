"""The steps a local run will execute, read from the compiled pipeline spec.

:func:`plan_steps` walks the spec's DAG (sub-pipelines included) with the run's
parameter values: a task behind a gate on pipeline parameters is decided here
(:func:`evaluate_condition` reads KFP's CEL-style trigger conditions); a gate on
a step's output is decided at run time, so its tasks are counted and the console
shows them as skipped when KFP says so. The console's N of ``[k/N]`` is the
length of this plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One task of the run, as kfp's local runner names it in its log lines.

    Attributes:
        task: kfp's local task name (the component name without ``comp-``).
        label: the display name (``set_display_name``), shown on the console.
        groups: the enclosing groups (sub-pipelines, ``dsl.If`` decided at run time), by
            their task names: kfp names a group when it skips it.
        off: switched off by the parameters (``enabled`` false, or its model comes from a
            step that is off): it runs as a no-op, and the console folds it into one line.
    """

    task: str
    label: str
    groups: tuple[str, ...] = ()
    off: bool = False


# --- the plan: which tasks the run will execute, from the compiled pipeline ---------------


class _UnknownError(Exception):
    """A condition refers to a value only known at run time (a task output)."""


_UNKNOWN = object()
_TOKENS = re.compile(
    r"\s*(?:(?P<ref>inputs\.parameter_values\['(?P<name>[^']+)'\])|(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<word>true|false|null)|(?P<op>&&|\|\||==|!=|<=|>=|[()!<>]))"
)


def _tokens(expr: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(expr.rstrip()):
        match = _TOKENS.match(expr, pos)
        if not match:
            raise _UnknownError(expr)  # a form this reader does not know: decide at run time
        pos = match.end()
        if match.group("ref"):
            out.append(("val", ("ref", match.group("name"))))
        elif match.group("str"):
            out.append(("val", match.group("str")[1:-1].replace("\\'", "'")))
        elif match.group("num"):
            out.append(("val", float(match.group("num"))))
        elif match.group("word"):
            out.append(("val", {"true": True, "false": False, "null": None}[match.group("word")]))
        else:
            out.append(("op", match.group("op")))
    return out


def evaluate_condition(expr: str, values: dict[str, Any]) -> bool:
    """Evaluate a KFP ``triggerPolicy.condition`` (CEL subset) over known parameter values.

    Raises:
        _UnknownError: the condition needs a value missing from ``values`` (decided at run time).
    """
    toks = _tokens(expr)
    pos = 0

    def peek() -> tuple[str, Any] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, Any]:
        nonlocal pos
        if pos >= len(toks):
            raise _UnknownError(expr)
        pos += 1
        return toks[pos - 1]

    def operand() -> Any:
        kind, value = take()
        if kind == "op" and value == "!":
            return not operand()
        if kind == "op" and value == "(":
            result = disjunction()
            if take() != ("op", ")"):
                raise _UnknownError(expr)
            return result
        if kind != "val":
            raise _UnknownError(expr)
        if isinstance(value, tuple):
            found = values.get(value[1], _UNKNOWN)
            if found is _UNKNOWN:
                raise _UnknownError(value[1])
            return float(found) if isinstance(found, int) and not isinstance(found, bool) else found
        return value

    def comparison() -> Any:
        left = operand()
        nxt = peek()
        if nxt and nxt[0] == "op" and nxt[1] in ("==", "!=", "<", ">", "<=", ">="):
            take()
            right = operand()
            compare: dict[str, Callable[[Any, Any], bool]] = {
                "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                "<": lambda a, b: a < b,
                ">": lambda a, b: a > b,
                "<=": lambda a, b: a <= b,
                ">=": lambda a, b: a >= b,
            }
            return compare[nxt[1]](left, right)
        return left

    def chain(operand: Callable[[], Any], op: str) -> Any:
        """``operand (op operand)*``, all operands evaluated (no side effects to skip)."""
        result = operand()
        while peek() == ("op", op):
            take()
            right = operand()
            result = bool(result) and bool(right) if op == "&&" else bool(result) or bool(right)
        return result

    def disjunction() -> Any:
        return chain(lambda: chain(comparison, "&&"), "||")

    result = disjunction()
    if pos != len(toks):
        raise _UnknownError(expr)
    return bool(result)


def plan_steps(pipeline_spec: dict, params: dict[str, Any]) -> list[Step]:
    """The tasks a run of ``pipeline_spec`` (PipelineSpec as a dict) with ``params`` executes.

    A ``dsl.If`` on pipeline parameters is decided here (its tasks are left out
    when false: ``deploy-vertex`` under ``deploy_target=tf_serving``); one on a
    task output (``blessed``) is kept, and its tasks name it in ``groups``.
    """
    components = pipeline_spec["components"]
    root = pipeline_spec["root"]
    values = {
        name: spec["defaultValue"]
        for name, spec in root.get("inputDefinitions", {}).get("parameters", {}).items()
        if "defaultValue" in spec
    }
    values.update(params)
    steps: list[Step] = []
    _walk(root["dag"], values, (), components, steps)
    return steps


def _is_off(task: dict, inputs: dict[str, Any], off_tasks: set[str]) -> bool:
    """Switched off by a known ``enabled`` false, or made from the model of a step that is."""
    if inputs.get("enabled") is False:
        return True
    model = task.get("inputs", {}).get("artifacts", {}).get("model", {})
    return model.get("taskOutputArtifact", {}).get("producerTask") in off_tasks


def _bindings(task: dict, scope: dict[str, Any]) -> dict[str, Any]:
    """A task's input parameters that are known before the run (constants, pipeline inputs)."""
    known: dict[str, Any] = {}
    for name, source in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            value = scope.get(source["componentInputParameter"], _UNKNOWN)
        elif "constant" in source.get("runtimeValue", {}):
            value = source["runtimeValue"]["constant"]
        else:  # a task output: known only at run time
            value = _UNKNOWN
        if value is not _UNKNOWN:
            known[name] = value
    return known


def _walk(
    dag: dict, scope: dict[str, Any], groups: tuple[str, ...], components: dict, out: list[Step]
) -> None:
    off_tasks: set[str] = set()
    for key, task in _in_order(dag.get("tasks", {})):
        inputs = _bindings(task, scope)
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition:
            try:
                if not evaluate_condition(condition, inputs):
                    continue  # decided by the parameters: never runs
            except _UnknownError:
                pass  # decided at run time: counted, and skipped when kfp says so
        ref = task["componentRef"]["name"]
        component = components.get(ref, {})
        if "dag" in component:
            _walk(component["dag"], inputs, (*groups, key), components, out)
        else:
            label = task.get("taskInfo", {}).get("name", key)
            off = _is_off(task, inputs, off_tasks)
            if off:
                off_tasks.add(key)
            out.append(Step(ref.removeprefix("comp-"), label, groups, off))


def _in_order(tasks: dict[str, dict]) -> list[tuple[str, dict]]:
    """The tasks with each after those it depends on (the spec lists them by name)."""
    done: dict[str, dict] = {}

    def visit(key: str) -> None:
        if key in done or key not in tasks:
            return
        done[key] = {}  # a mark against cycles (the compiler allows none)
        for dep in tasks[key].get("dependentTasks", []):
            visit(dep)
        done.pop(key)
        done[key] = tasks[key]

    for key in tasks:
        visit(key)
    return list(done.items())
