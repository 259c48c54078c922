"""What the machine and this test process were doing, in a few lines, for the test log.

A CI run on a shared runner can fail by time alone (a server that does not answer in
its timeout). The log then says what else ran (load, memory, the busiest processes,
ones left from an earlier run) and where this process's threads stood, so the cause is
read off the log instead of guessed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

TIMEOUT_WORDS = ("timed out", "Timeout", "timeout")  # a failure that may be the machine's


def _stat(pid: str) -> tuple[str, list[str]] | None:
    """(command, the fields after it) of /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()


def _proc_stat(pid: str) -> tuple[str, str, int] | None:
    """(command, state, utime + stime ticks) of one process, or None if it is gone."""
    got = _stat(pid)
    if got is None:
        return None
    name, fields = got
    return name, fields[0], int(fields[11]) + int(fields[12])


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return " ".join(fh.read().replace(b"\0", b" ").decode(errors="replace").split())
    except OSError:
        return ""


def _ancestors() -> set[int]:
    pid, seen = os.getpid(), set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        pid = _parent(str(pid))
    return seen


def _parent(pid: str) -> int:
    got = _stat(pid)
    return int(got[1][1]) if got else -1


def stop_leftovers(mark: str, orphan_mark: str) -> list[str]:
    """SIGKILL what a run stopped at CI's time limit left going: the processes whose
    command line holds ``mark`` (this checkout's path), and the orphans (parent gone)
    whose command line holds ``orphan_mark`` (a temporary folder every run's podman
    service is named by), never this process or its ancestors. Returns what it stopped."""
    import signal

    keep, stopped = _ancestors(), []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        cmd = _cmdline(pid)
        ours = mark in cmd or (orphan_mark in cmd and _parent(pid) == 1)
        if int(pid) in keep or not ours:
            continue
        try:
            os.kill(int(pid), signal.SIGKILL)
            stopped.append(f"[{pid}] {cmd[:80]!r}")
        except OSError:
            pass
    return stopped


def remove_leftover_containers(image_prefix: str) -> list[str]:
    """Force-remove podman's containers of images named ``image_prefix``...: a run stopped
    at CI's time limit can leave steps running in them, holding the engine's locks."""
    import shutil
    import subprocess

    if not shutil.which("podman"):
        return []
    try:
        listed = subprocess.run(
            ["podman", "ps", "-a", "--format", "{{.ID}} {{.Image}}"],
            capture_output=True, text=True, timeout=120,
        ).stdout.split("\n")  # fmt: skip
        rows = [ln.split() for ln in listed]
        ids = [r[0] for r in rows if len(r) > 1 and r[1].startswith(image_prefix)]
        if ids:
            subprocess.run(["podman", "rm", "-f", *ids], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"podman: {exc}"]
    return ids


def _mem_available_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def snapshot(sample_s: float = 0.5, top: int = 5) -> str:
    """Load, free memory, and the processes that used the CPU over ``sample_s``."""
    if not os.path.isdir("/proc"):
        return "no /proc here"
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    before = {p: s for p in pids if (s := _proc_stat(p))}
    time.sleep(sample_s)
    hz = os.sysconf("SC_CLK_TCK")
    busy, blocked = [], []
    for pid, (name, _, ticks) in before.items():
        now = _proc_stat(pid)
        if now is None:
            continue
        if now[1] == "D":
            blocked.append(f"{name}[{pid}]")
        cpu = (now[2] - ticks) / hz / sample_s
        if cpu > 0.05:
            busy.append((cpu, pid, name))
    busy.sort(reverse=True)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    procs = ", ".join(
        f"{name}[{pid}] {cpu:.0%} {_cmdline(pid)[:90]!r}" for cpu, pid, name in busy[:top]
    )
    return (
        f"load {load}; {_mem_available_gib():.1f} GiB available; {len(before)} processes"
        f"{'; waiting on I/O: ' + ', '.join(blocked[:8]) if blocked else ''}; "
        f"busiest: {procs or 'none'}"
    )


def thread_stacks(depth: int = 3) -> str:
    """Each thread of this process with its innermost ``depth`` frames, one line each."""
    names = {t.ident: t.name for t in threading.enumerate()}
    lines = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = traceback.extract_stack(frame)[-depth:]
        where = " < ".join(
            f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack)
        )
        lines.append(f"{names.get(ident, ident)}: {where}")
    return "\n".join(sorted(lines))
