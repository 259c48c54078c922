"""The ``python3`` a warm local run gives KFP's SubprocessRunner (see ``warm_server``).

``WarmStart`` writes this file, behind a ``#!<real python> -IS`` line, next to the
server's socket. ``python3 -m kfp.dsl.executor_main ARGS`` becomes a request to the
warm server, which forks the step from its pre-imported parent; anything else,
or a server that does not answer, runs the real interpreter unchanged (a cold
start). Standard library only, no ``site``: this process starts in milliseconds.
"""

import array
import json
import os
import signal
import socket
import struct
import sys

WARM_MODULES = ("kfp.dsl.executor_main",)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


def cold(args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *args])


def request(sock: socket.socket, module: str, args: list[str]) -> None:
    body = json.dumps(
        {"module": module, "args": args, "env": dict(os.environ), "cwd": os.getcwd()}
    ).encode()
    fds = array.array("i", [0, 1, 2])
    header = struct.pack("!I", len(body))
    sock.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    sock.sendall(body)


def relay(sock: socket.socket) -> int:
    """Forward signals to the step; return its exit code (or die of its signal)."""
    pid = 0

    def forward(sig, _frame):
        if pid:
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    for line in sock.makefile("r"):
        message = json.loads(line)
        if "pid" in message:
            pid = message["pid"]
        elif "exit" in message:
            return int(message["exit"])
        elif "signal" in message:
            died_of = signal.Signals(int(message["signal"]))
            signal.signal(died_of, signal.SIG_DFL)
            os.kill(os.getpid(), died_of)
    print("tfopt warm start: the warm server went away during the step", file=sys.stderr)
    return 1


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "-m" or args[1] not in WARM_MODULES:
        cold(args)
    path = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "server.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request(sock, args[1], args[2:])
    except OSError:
        sock.close()
        cold(args)
    return relay(sock)


if __name__ == "__main__":
    sys.exit(main())
