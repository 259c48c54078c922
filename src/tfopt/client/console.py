"""Progress of a local run on the console: one line per step, a live status line on a terminal.

KFP's local runner executes the pipeline's tasks one after another and says
so in log lines (``Executing task 'prune'``, ``Task 'prune' finished with
status SUCCESS``, ``Task prune cache hit``, ``Skipping conditional task
gate-blessed``). :class:`RunLog` recognises those lines and calls
:class:`Progress`, which prints::

    [7/28] prune ... done 9.8 s, sparsity 0.80

The total comes from the compiled pipeline (:func:`tfopt.client.step_plan.plan_steps`): every task
the run will execute, the tasks behind a gate decided at run time included
(they end as ``skipped`` when the gate is false), so the count ends at N/N.
The key metric is read from the step's ``executor_output.json``.

On a terminal a status line (current step, its time, steps done, elapsed) is
redrawn in place; off a terminal (CI, KFP, a pipe) only plain lines, no ANSI.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from tfopt import fsutil
from tfopt.client.step_plan import Step

CLEAR = "\r\x1b[K"  # carriage return + erase the line: redraw the status line in place


# --- the key figure of a finished step ------------------------------------------------------

# (key, format) in order of preference: the first key a step reports is its figure
_FIGURES: tuple[tuple[str, Callable[[Any, dict], str | None]], ...] = (
    ("compression", lambda v, m: f"compression {v:.1f}x"),
    ("sparsity", lambda v, m: f"sparsity {v:.2f}" if v else None),
    ("val_accuracy", lambda v, m: f"val accuracy {v:.2%}"),
    ("acceptable", lambda v, m: f"{v:.0f} of {m.get('candidates', 0):.0f} candidates acceptable"),
    ("quantization", lambda v, m: str(v)),
    ("smoke_test", lambda v, m: f"smoke test {v}"),
    ("infra_blessed", lambda v, m: "infra validation passed" if v else f"infra: {m.get('reason')}"),
    ("data_check", lambda v, m: str(v)),  # validate-data: its verdict and the champion
    ("num_train", lambda v, m: f"{v:.0f} train examples"),
    ("candidates", lambda v, m: f"{v:.0f} candidates"),
)


def step_figure(executor_output: dict) -> str:
    """One short figure from a step's ``executor_output.json`` ('' when it reports none).

    A step switched off by its ``enabled`` parameter says ``off`` and why.
    """
    merged: dict[str, Any] = {}
    artifacts = executor_output.get("artifacts", {})
    # the metrics artifact first: its figures are the step's own measurements
    ordered = sorted(artifacts.items(), key=lambda item: item[0] != "metrics")
    for _, entry in ordered:
        for artifact in entry.get("artifacts", []):
            meta = artifact.get("metadata") or {}
            if meta.get("skipped"):
                return f"off ({meta.get('skip_reason') or 'disabled'})"
            for k, v in meta.items():
                merged.setdefault(k, v)
    for k, v in (executor_output.get("parameterValues") or {}).items():
        merged.setdefault(k, v)
    for key, fmt in _FIGURES:
        value = merged.get(key)
        if value is None:
            continue
        try:
            text = fmt(value, merged)
        except (TypeError, ValueError):  # an unexpected type: no figure rather than no line
            continue
        if text:
            return text
    return ""


# --- start-up noise ---------------------------------------------------------------------------

# TensorFlow's native start-up lines written before absl::InitializeLog; measured with TF 2.21:
# TF_CPP_MIN_LOG_LEVEL (0-3), GLOG_minloglevel and ABSL_MIN_LOG_LEVEL do not silence them.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\] .*"
    r"|E\d{4} .*(?:cuInit|cuda|CUDA|cuDNN|cuFFT|cuBLAS|TensorRT).*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate "
    r"compiler flags\.)$"
)


def gpu_visible(environ: dict[str, str] | None = None) -> bool:
    """Whether this machine shows an NVIDIA GPU to the steps (without importing TensorFlow)."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def is_startup_noise(line: str) -> bool:
    """A TensorFlow / CUDA / absl start-up line that says nothing on a machine without GPU."""
    return bool(_NOISE.match(line.strip()))


@dataclass
class _Started:
    number: int
    at: float
    label: str
    attempt: int = 1


class Progress:
    """The console side of a run; :class:`RunLog` calls it as kfp reports tasks.

    Args:
        steps: the plan (:func:`plan_steps`); tasks kfp runs that are not in it
            are numbered after it and raise the total.
        stream: where the lines go.
        pipeline_root: kfp's pipeline root, where each task's ``executor_output.json`` lies.
        verbose: the step output is streamed too; progress lines are then whole lines.
        tick: seconds between redraws of the status line on a terminal (0 = no thread).
    """

    def __init__(
        self,
        steps: Iterable[Step],
        stream: TextIO,
        pipeline_root: str = "",
        verbose: bool = False,
        tick: float = 1.0,
        concurrent: bool = False,
    ):
        self.steps = {s.task: s for s in steps if not s.off}
        # switched off by the parameters: no-op steps, folded into one line
        self.off = {s.task: s.label for s in steps if s.off}
        self.total = len(self.steps)
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.live = self.tty and not verbose  # a status line needs the terminal to itself
        self.verbose = verbose
        self.root = pipeline_root
        self.tick = tick
        self.start = time.monotonic()
        self.wall_start = time.time()
        self.done = 0
        # steps may run at the same time: each line is written whole when its step ends
        self.concurrent = concurrent
        self.running: dict[str, _Started] = {}
        self._ended = 0
        self._seen: dict[str, _Started] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open = False  # a started line waits for its end (plain, not verbose)
        self._batch: list[tuple[_Started, str]] = []  # skips waiting to share one line

    # --- events (from RunLog) ---
    def started(self, task: str) -> None:
        if task in self.off:
            return
        with self._lock:
            self._flush_batch()
            seen = self._seen.get(task)
            if seen:  # kfp retries a failed task under the same name
                seen.attempt += 1
                seen.at = time.monotonic()
            else:
                seen = self._register(task)
            self.running[task] = seen
            retry = f" (attempt {seen.attempt})" if seen.attempt > 1 else ""
            head = f"{self._count(seen)} {seen.label}{retry} ..."
            if self.live:
                self._status()
            elif self.verbose:
                self._write(head + "\n")
            elif not self.concurrent:
                self._end_open()
                self._write(head)
                self._open = True

    def finished(
        self, task: str, ok: bool, tail: list[str] | None = None, log_path: str = ""
    ) -> None:
        if task in self.off and ok:
            return
        with self._lock:
            seen = self._seen.get(task) or self._register(task)
            seconds = time.monotonic() - seen.at
            if ok:
                figure = self._figure(task)
                self.done += 1
                self._result(seen, f"done {seconds:.1f} s" + (f", {figure}" if figure else ""))
            else:
                self._result(seen, f"FAILED after {seconds:.1f} s")
                lines = [line for line in tail or [] if line.strip()]
                if lines:
                    self._write(f"    last {len(lines)} lines of {seen.label}:\n")
                    self._write("".join(f"    | {line}\n" for line in lines))
                if log_path:
                    self._write(f"    full log: {log_path}\n")
            self.running.pop(task, None)
            if self.live:
                self._status()

    def cached(self, task: str) -> None:
        if task in self.off:
            return
        with self._lock:
            seen = self._seen.get(task) or self._register(task)
            self.done += 1
            self._result(seen, "cached")
            if self.live:
                self._status()

    def skipped(self, name: str, why: str, batch: bool = False) -> None:
        """kfp skipped task or group ``name``: each of its tasks not yet run ends as skipped.

        With ``batch`` (the many tasks after a failure) consecutive skips share one line.
        """
        with self._lock:
            for step in list(self.steps.values()):
                if (step.task == name or name in step.groups) and step.task not in self._seen:
                    seen = self._register(step.task)
                    self.done += 1
                    if batch:
                        self._batch.append((seen, why))
                    else:
                        self._result(seen, f"skipped ({why})")
            if self.live:
                self._status()

    # --- life cycle ---
    def __enter__(self) -> Progress:
        if self.off:
            names = ", ".join(self.off.values())
            self._write(f"off (disabled by pipeline parameters): {names}\n")
        if self.live and self.tick > 0:
            self._thread = threading.Thread(target=self._redraw, name="tfopt-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            if self.live:
                self._write(CLEAR)
            self._end_open()
            self.stream.flush()

    def status_line(self) -> str:
        """The live line: the current step and its time, steps done, time elapsed."""
        elapsed = time.monotonic() - self.start
        clock = f"{int(elapsed // 60)}:{int(elapsed % 60):02d}"
        if len(self.running) == 1:
            (seen,) = self.running.values()
            now = f"{self._count(seen)} {seen.label} ... {time.monotonic() - seen.at:.0f} s  "
        elif self.running:
            tick = time.monotonic()
            now = (
                "running: "
                + ", ".join(f"{s.label} {tick - s.at:.0f} s" for s in self.running.values())
                + "  "
            )
        else:
            now = ""
        return f"{now}({self.done}/{self.total} done, {clock} elapsed)"

    # --- internals (called with the lock held) ---
    def _number(self) -> int:
        number = len(self._seen) + 1
        self.total = max(self.total, number)
        return number

    def _label(self, task: str) -> str:
        step = self.steps.get(task)
        return step.label if step else task

    def _register(self, task: str) -> _Started:
        seen = self._seen[task] = _Started(self._number(), time.monotonic(), self._label(task))
        return seen

    def _count(self, seen: _Started) -> str:
        width = len(str(self.total))
        return f"[{seen.number:>{width}}/{self.total}]"

    def _result(self, seen: _Started, text: str) -> None:
        if self._open and seen in self.running.values():
            self._write(f" {text}\n")  # completes "[7/28] prune ..."
            self._open = False
            return
        self._end_open()
        if self.concurrent:  # numbered as they end, so the lines count up in order
            self._ended += 1
            seen.number = self._ended
        prefix = CLEAR if self.live else ""
        dots = " ..." if text.startswith(("done", "FAILED")) else ""
        self._write(f"{prefix}{self._count(seen)} {seen.label}{dots} {text}\n")

    def _flush_batch(self) -> None:
        if not self._batch:
            return
        first, why = self._batch[0]
        last = self._batch[-1][0]
        width = len(str(self.total))
        span = f"[{first.number:>{width}}-{last.number}/{self.total}]"
        names = ", ".join(seen.label for seen, _ in self._batch)
        self._batch = []
        self._write(f"{CLEAR if self.live else ''}{span} skipped ({why}): {names}\n")

    def _end_open(self) -> None:
        self._flush_batch()
        if self._open:
            self._write("\n")
            self._open = False

    def _figure(self, task: str) -> str:
        if not self.root:
            return ""
        # the newest run under the pipeline root holds this task's output
        found = glob.glob(os.path.join(glob.escape(self.root), "*", task, "executor_output.json"))
        fresh = [p for p in found if os.path.getmtime(p) >= self.wall_start - 1]
        if not fresh:
            return ""
        try:
            return step_figure(fsutil.read_json(max(fresh, key=os.path.getmtime)))
        except (OSError, ValueError):
            return ""

    def _status(self) -> None:
        self._write(CLEAR + self.status_line())

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _redraw(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                if not self._open:
                    self._status()


class QuietStartup:
    """Filter TensorFlow's native start-up lines out of this process's stderr (file descriptor 2).

    Those lines are written by C++ straight to fd 2 when the CLI imports
    TensorFlow, so no Python handler sees them: fd 2 goes through a pipe and a
    thread forwards every other line, in order, to the real stderr. Used only
    where no GPU is visible (there the lines say which GPU was found).
    """

    def __init__(self) -> None:
        self._saved = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> QuietStartup:
        import sys

        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        self._saved = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(
            target=self._forward, args=(read_fd, self._saved), name="tfopt-stderr", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import sys

        sys.stderr.flush()
        os.dup2(self._saved, 2)  # the pipe's last writer is gone: the thread reads to the end
        if self._thread:
            self._thread.join(timeout=5)
            if self._thread.is_alive():  # a child kept the pipe open: leave the thread its fd
                return
        os.close(self._saved)

    @staticmethod
    def _forward(read_fd: int, out_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                if is_startup_noise(raw.decode("utf-8", "replace")):
                    continue
                try:
                    os.write(out_fd, raw)
                except OSError:
                    return
