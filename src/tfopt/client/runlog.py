"""The output of a local run: one log per step, no ANSI codes off a terminal, one-line failures.

KFP's local runner prints every step's output (tracebacks included) into one
stream, colours task names with ANSI codes whatever the stream is, and ends a
failed run with ``RuntimeError: Pipeline ... Inner task failed: 'train'``. The
cause then sits hundreds of lines up. :class:`RunLog` tees the run's stdout
and kfp's log records into ``<output_dir>/logs/<step>.log`` (and ``run.log``),
strips the colours when the stream is not a terminal, and turns kfp's error
into :class:`StepFailedError`: the step, the cause (its last ``...Error: message``
line) and the path of that step's full log.

With a :class:`~tfopt.client.console.Progress`, the console shows only its
progress lines (``echo=False``): RunLog reports kfp's task events to it (start,
end, cache hit, skipped), with the last lines of a failed step, and keeps kfp's
own INFO records off the other root handlers. ``echo=True`` streams everything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, TextIO

from tfopt.client.console import is_startup_noise
from tfopt.errors import TfoptError

if TYPE_CHECKING:
    from tfopt.client.console import Progress

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
_INNER = re.compile(r"Inner task failed: '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (SUCCESS|FAILURE)")
_CACHE_HIT = re.compile(r"Task (\S+) cache hit \(key=")
_GATE_SKIP = re.compile(r"Skipping conditional task (\S+) \(condition evaluated to False\)")
_UPSTREAM_SKIP = re.compile(r"Skipping task (\S+): upstream task\(s\) .* failed")
_KFP_RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} - [A-Z]+ - ")  # kfp's log format
TAIL_LINES = 20  # of a failed step, on the console


class StepFailedError(TfoptError):
    """A pipeline step failed; the message names the step, the cause and its log."""


class _KfpQuiet(logging.Filter):
    """Keeps kfp's INFO records (logged on the root logger) off a handler: the console shows
    progress lines instead, and the records still reach the logs through :class:`_Records`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.WARNING


class _Records(logging.Handler):
    def __init__(self, log: RunLog):
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.line(record.getMessage())
        except Exception:  # a log line must never break the run
            self.handleError(record)


class RunLog:
    """Context manager around a local run; see the module docstring."""

    def __init__(
        self,
        log_dir: str,
        stream=None,
        progress: Progress | None = None,
        echo: bool = True,
        quiet_startup: bool = False,
    ):
        self.dir = log_dir
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.progress = progress
        self.echo = echo
        self.quiet_startup = quiet_startup  # leave TF/CUDA start-up lines out of failure tails
        # Per thread: the step it runs and its last lines. kfp prints each step's output from
        # the thread that runs the step (one at a time, or several: client/concurrent_dag.py).
        self._local = threading.local()
        self.errors: dict[str, str] = {}
        self._tails: dict[str, deque[str]] = {}
        self._lock = threading.RLock()  # the files, the errors, the progress display
        self._files: dict[str, TextIO] = {}
        self._colors: dict[str, str] = {}
        self._quiet = _KfpQuiet()
        self._quieted: list[logging.Handler] = []

    @property
    def step(self) -> str:
        """The step whose output this thread is writing ("run" before any)."""
        return getattr(self._local, "step", "run")

    @property
    def tail(self) -> deque[str]:
        return self._tails.setdefault(self.step, deque(maxlen=TAIL_LINES))

    # --- stream protocol (stands in for sys.stdout) ---
    def write(self, text: str) -> int:
        if self.echo:
            with self._lock:
                self.stream.write(text if self.tty else ANSI.sub("", text))
        partial = getattr(self._local, "partial", "") + text
        *lines, self._local.partial = partial.split("\n")
        for line in lines:
            self.line(line)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        return self.stream.fileno()

    # --- bookkeeping ---
    def line(self, text: str) -> None:
        """Record one line: switch step on kfp's task start, remember error lines."""
        plain = ANSI.sub("", text)
        start = _TASK_START.search(plain)
        if start:
            self._local.step = start.group(1)
            self.tail.clear()
        with self._lock:
            match = _ERROR_LINE.match(plain)
            if match and not plain.lstrip().startswith("RuntimeError: Pipeline"):
                self.errors[self.step] = f"{match.group(1)}: {match.group(2).strip()}"
            for name in {"run", self.step}:
                self._file(name).write(plain + "\n")
            if self.progress is not None:
                self._report(plain, start)

    def _report(self, plain: str, start: re.Match | None) -> None:
        """Tell the progress display what kfp just said; keep the step's last lines."""
        assert self.progress is not None
        end = _TASK_END.search(plain)
        if start:
            self.progress.started(start.group(1))
        elif end:
            ok = end.group(2) == "SUCCESS"
            if not ok and end.group(1) in self._files:
                self._files[end.group(1)].flush()  # the log the console points to is whole
            tail = self._tails.get(end.group(1), ())
            self.progress.finished(
                end.group(1), ok, tail=list(tail), log_path=self.path(end.group(1))
            )
        elif hit := _CACHE_HIT.search(plain):
            self.progress.cached(hit.group(1))
        elif gate := _GATE_SKIP.search(plain):
            self.progress.skipped(gate.group(1), f"{gate.group(1).removeprefix('gate-')} is false")
        elif upstream := _UPSTREAM_SKIP.search(plain):
            self.progress.skipped(upstream.group(1), "an upstream step failed", batch=True)
        else:
            line = plain[4:] if plain.startswith("    ") else plain  # kfp indents step output
            if _KFP_RECORD.match(line) or not line.strip():
                return  # kfp's own "Streamed logs:" and blank separators
            if not (self.quiet_startup and is_startup_noise(line)):
                self.tail.append(line.rstrip())

    def _file(self, name: str):
        if name not in self._files:
            os.makedirs(self.dir, exist_ok=True)
            safe = re.sub(r"[^\w.-]", "_", name)
            self._files[name] = open(os.path.join(self.dir, f"{safe}.log"), "a")  # noqa: SIM115
        return self._files[name]

    def path(self, step: str) -> str:
        return os.path.join(self.dir, re.sub(r"[^\w.-]", "_", step) + ".log")

    def failure(self, exc: BaseException) -> StepFailedError:
        """kfp's ``RuntimeError`` as one line: step, cause, full log."""
        plain = ANSI.sub("", str(exc))
        inner = _INNER.search(plain)
        step = inner.group(1) if inner else self.step
        cause = self.errors.get(step) or next(reversed(self.errors.values()), None) or plain
        log_path = self.path(step) if step in self._files else self.path("run")
        return StepFailedError(f"step {step} failed: {cause} (full log: {log_path})")

    def __enter__(self) -> RunLog:
        from kfp.local import logging_utils

        if self.progress is not None:
            self.progress.__enter__()
        if not self.tty:  # kfp colours whatever the stream; plain text off a terminal
            for key, value in vars(logging_utils.Color).items():
                if isinstance(value, str) and not key.startswith("_"):
                    self._colors[key] = value
                    setattr(logging_utils.Color, key, "")
        self._handler = _Records(self)
        root = logging.getLogger()
        if not self.echo:
            self._quieted = list(root.handlers)
            for handler in self._quieted:
                handler.addFilter(self._quiet)
        root.addHandler(self._handler)
        self._stdout, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc) -> None:
        from kfp.local import logging_utils

        sys.stdout = self._stdout
        logging.getLogger().removeHandler(self._handler)
        for handler in self._quieted:
            handler.removeFilter(self._quiet)
        for key, value in self._colors.items():
            setattr(logging_utils.Color, key, value)
        partial = getattr(self._local, "partial", "")
        if partial:
            self.line(partial)
            self._local.partial = ""
        for fh in self._files.values():
            fh.close()
        if self.progress is not None:
            self.progress.__exit__(*exc)


def run_output(
    pipeline_spec: Any,
    params: dict,
    output_dir: str,
    verbose: bool = False,
    concurrent: bool = False,
) -> RunLog:
    """The :class:`RunLog` of a local run of ``pipeline_spec`` (a PipelineSpec message).

    Its progress lines go to the current stdout; the steps' output to
    ``output_dir/logs``, and with ``verbose`` to stdout as well.
    """
    from google.protobuf import json_format

    from tfopt.client.console import Progress, gpu_visible
    from tfopt.client.step_plan import plan_steps

    steps = plan_steps(json_format.MessageToDict(pipeline_spec), params)
    out = sys.stdout
    progress = Progress(
        steps, out, os.path.join(output_dir, "artifacts"), verbose=verbose, concurrent=concurrent
    )
    return RunLog(
        os.path.join(output_dir, "logs"),
        stream=out,
        progress=progress,
        echo=verbose,
        quiet_startup=not gpu_visible(),
    )
