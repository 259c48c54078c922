"""The warm parent of a local run: TensorFlow imported once, every step forked from it.

Started by ``tfopt.client.warm.WarmStart`` as ``python -m tfopt.client.warm_server SOCKET``.
Each step's ``python3 -m kfp.dsl.executor_main ...`` is a small shim
(``warm_shim.py``) that connects here and sends its argv, environment, working
directory and its stdin / stdout / stderr descriptors (``SCM_RIGHTS``). This
process forks; the child takes those descriptors, that environment and
directory, runs the module as ``__main__`` and exits as a fresh interpreter
would (exit handlers run, non-daemon threads joined). The shim relays the exit
status and forwards signals, so KFP's runner sees an ordinary process.

Why: a step's own work is often shorter than Python + TensorFlow + tfmot + kfp
start-up (about 5 s per step on 2 cores, docs/benchmarks.md). Forking after the
imports and before any TensorFlow op runs leaves each child a clean runtime:
no session, device or thread pool exists yet.

Single-threaded on purpose (a fork from a threaded parent copies held locks):
one ``selectors`` loop serves connections, child exits (SIGCHLD on a wakeup
pipe) and the parent's death (the run's process going away kills every child).
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import importlib
import json
import os
import runpy
import selectors
import shutil
import signal
import socket
import struct
import sys
import threading
import traceback

# What the steps import (seconds on 2 cores): kfp.dsl 1.1, TensorFlow + tf_keras 4.0, tfmot 2.1.
PRELOAD = ("tfopt._keras", "tensorflow_model_optimization", "kfp.dsl", "tfopt.training.train")
MAX_REQUEST = 16 << 20  # argv + environment, JSON


def recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One length-prefixed JSON request and the descriptors sent with its first bytes."""
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(4, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if len(data) < 4:
        raise ConnectionError("warm start: truncated request")
    (size,) = struct.unpack("!I", data)
    if size > MAX_REQUEST:
        raise ConnectionError(f"warm start: request of {size} bytes")
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("warm start: truncated request")
        body += chunk
    return json.loads(body), list(fds)


def send_message(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the requested ``python -m MODULE ARGS`` process."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    module, args = request["module"], request["args"]
    sys.argv = [module, *args]
    sys.path[0] = request["cwd"]  # as ``python -m`` puts it
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:
        traceback.print_exc()
        code = 1
    # what a fresh interpreter does on the way out
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    _flush_std()
    return code


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


class Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.parent = os.getppid()
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # pid -> the shim's connection
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires
        self.running = True

    def _stop(self, *_) -> None:
        self.running = False

    def serve(self) -> None:
        # Only now a graceful stop: during the imports SIGTERM keeps its default and ends the
        # process at once (a run stopped by bad parameters waited ~5 s for them to finish).
        signal.signal(signal.SIGTERM, self._stop)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "wakeup")
        while self.running and os.getppid() == self.parent:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wakeup":
                    while _drain(self.wakeup_r):
                        pass
                else:
                    self._shim_gone(key.fileobj, key.data)  # type: ignore[arg-type]
            self._reap()
        for pid in list(self.children):
            _kill(pid)
        self._reap(block=True)

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            request, fds = recv_request(conn)
            if len(fds) != 3:
                raise ConnectionError(f"warm start: expected 3 descriptors, got {len(fds)}")
        except (OSError, ValueError) as exc:
            print(f"tfopt warm start: bad request: {exc}", file=sys.stderr, flush=True)
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.listener.close()
                self.selector.close()
                for other in self.children.values():
                    other.close()
                conn.close()
                code = run_child(request, fds)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        send_message(conn, {"pid": pid})
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _shim_gone(self, conn: socket.socket, pid: int) -> None:
        """The shim closed its end (killed): its step must not outlive it."""
        if not conn.recv(1):
            self.selector.unregister(conn)
            _kill(pid)

    def _reap(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):
                message = {"signal": os.WTERMSIG(status)}
            else:
                message = {"exit": os.waitstatus_to_exitcode(status)}
            with contextlib.suppress(OSError):
                send_message(conn, message)
            if conn.fileno() >= 0:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(conn)
                conn.close()


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> None:
    server = Server(argv[0])  # listening before the imports: early shims wait in the backlog
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a step that needs it fails in its own log, as it would cold
            print(f"tfopt warm start: not preloaded: {module}: {exc}", file=sys.stderr)
    # The preloaded objects move out of the collector's reach: a child's full collection
    # (evaluate runs one per candidate) no longer scans TensorFlow's ~10^6 objects, and
    # does not touch (copy) the parent's pages to do it.
    gc.freeze()
    print("ready", flush=True)
    try:
        server.serve()
    finally:  # also when the run's process was killed: nothing of the run stays in /tmp
        shutil.rmtree(os.path.dirname(argv[0]), ignore_errors=True)
    # No interpreter teardown: unloading TensorFlow's modules took 1.8 s that the run's
    # end waited for, and this process holds nothing else to flush or release.
    _flush_std()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
