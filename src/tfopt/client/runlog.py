"""The output of a local run: one log per step, no ANSI codes off a terminal, one-line failures.

KFP's local runner prints every step's output (tracebacks included) into one
stream, colours task names with ANSI codes whatever the stream is, and ends a
failed run with ``RuntimeError: Pipeline ... Inner task failed: 'train'``. The
cause then sits hundreds of lines up. :class:`RunLog` tees the run's stdout
and kfp's log records into ``<output_dir>/logs/<step>.log`` (and ``run.log``),
strips the colours when the stream is not a terminal, and turns kfp's error
into :class:`StepFailedError`: the step, the cause (its last ``...Error: message``
line) and the path of that step's full log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TextIO

from tfopt.errors import TfoptError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")
_INNER = re.compile(r"Inner task failed: '([^']+)'")


class StepFailedError(TfoptError):
    """A pipeline step failed; the message names the step, the cause and its log."""


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

    def __init__(self, log_dir: str, stream=None):
        self.dir = log_dir
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.step = "run"
        self.errors: dict[str, str] = {}
        self._partial = ""
        self._files: dict[str, TextIO] = {}
        self._colors: dict[str, str] = {}

    # --- stream protocol (stands in for sys.stdout) ---
    def write(self, text: str) -> int:
        self.stream.write(text if self.tty else ANSI.sub("", text))
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
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
            self.step = start.group(1)
        match = _ERROR_LINE.match(plain)
        if match and not plain.lstrip().startswith("RuntimeError: Pipeline"):
            self.errors[self.step] = f"{match.group(1)}: {match.group(2).strip()}"
        for name in {"run", self.step}:
            self._file(name).write(plain + "\n")

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

        if not self.tty:  # kfp colours whatever the stream; plain text off a terminal
            for key, value in vars(logging_utils.Color).items():
                if isinstance(value, str) and not key.startswith("_"):
                    self._colors[key] = value
                    setattr(logging_utils.Color, key, "")
        self._handler = _Records(self)
        logging.getLogger().addHandler(self._handler)
        self._stdout, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc) -> None:
        from kfp.local import logging_utils

        sys.stdout = self._stdout
        logging.getLogger().removeHandler(self._handler)
        for key, value in self._colors.items():
            setattr(logging_utils.Color, key, value)
        if self._partial:
            self.line(self._partial)
            self._partial = ""
        for fh in self._files.values():
            fh.close()
