"""Warm start for local runs: every step forked from one pre-imported parent.

KFP's SubprocessRunner starts each step as ``<sys.executable> -m
kfp.dsl.executor_main ...`` (``kfp.local.subprocess_task_handler`` reads
``sys.executable`` when the step starts). ``WarmStart`` points ``sys.executable``
at a shim (``warm_shim.py``) for the duration of the run, and the shim has the
step forked from ``warm_server`` (TensorFlow, tf_keras, tfmot and kfp imported
once). Each step is still its own process with its own environment, working
directory, output, exit status and signals, so the run keeps the semantics of
the cluster, where each step is a container; the step only skips the start-up.
kfp itself is not patched. ``TFOPT_WARM_START=0`` (or ``tfopt run --cold``)
turns it off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from tfopt.client import warm_shim

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0  # the server binds its socket before its imports: this is only the bind


def enabled(requested: bool = True) -> bool:
    return requested and os.environ.get("TFOPT_WARM_START", "1") not in ("0", "false", "no")


class WarmStart(contextlib.AbstractContextManager):
    """Start the warm server and route the steps' ``python3`` through its shim."""

    def __init__(self, log_path: str | None = None) -> None:
        self.log_path = log_path  # the server's stderr ends up here (see __exit__)
        self.dir = ""
        self._log = ""
        self.proc: subprocess.Popen | None = None
        self._executable = sys.executable

    @classmethod
    def for_run(cls, output_dir: str) -> WarmStart:
        """The warm start of a local run into ``output_dir`` (its log: ``logs/warm-start.log``)."""
        return cls(os.path.join(os.path.abspath(output_dir), "logs", "warm-start.log"))

    @property
    def shim(self) -> str:
        return os.path.join(self.dir, "python3")

    def __enter__(self) -> WarmStart:
        self.dir = tempfile.mkdtemp(prefix="tfopt-warm-")
        socket_path = os.path.join(self.dir, "server.sock")
        with open(warm_shim.__file__, encoding="utf-8") as src:
            source = src.read()
        with open(self.shim, "w", encoding="utf-8") as dst:
            dst.write(f"#!{self._executable} -IS\n{source}")
        os.chmod(self.shim, 0o755)
        err: Any = subprocess.DEVNULL
        if self.log_path:  # first in the server's directory: a run stopped early writes nothing
            self._log = os.path.join(self.dir, "warm-start.log")
            err = open(self._log, "ab")
        try:
            self.proc = subprocess.Popen(
                [self._executable, "-m", "tfopt.client.warm_server", socket_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # a Ctrl-C reaches the steps through their shims only
            )
        finally:
            if err is not subprocess.DEVNULL:
                err.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log.warning(
                    "warm start unavailable (server exited %s): steps start cold",
                    self.proc.returncode,
                )
                return self
            time.sleep(0.02)
        sys.executable = self.shim
        return self

    def __exit__(self, *exc) -> None:
        sys.executable = self._executable
        # The log is kept where the run's logs are, once the run got as far as making them;
        # otherwise it goes with the server's directory (also when the run is killed).
        if self._log and os.path.isdir(os.path.dirname(str(self.log_path))):
            shutil.move(self._log, str(self.log_path))  # same file system: later lines follow
        self._log = ""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
