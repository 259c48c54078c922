"""Warm start (client/warm.py): a step forked from the pre-imported parent behaves as a fresh
``python3 -m kfp.dsl.executor_main`` process: its environment, directory, output, exit status
and signals; a killed shim takes its step with it; anything else runs cold."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tfopt.client.warm import WarmStart

COMPONENTS = textwrap.dedent(
    """
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def describe() -> str:
        import json, os, sys
        print("hello from the step", flush=True)
        parent = open(f"/proc/{os.getppid()}/cmdline").read().replace("\\0", " ")
        return json.dumps({
            "tensorflow_preloaded": "tensorflow" in sys.modules,
            "parent": parent,
            "cwd": os.getcwd(),
            "var": os.environ.get("TFOPT_TEST_VAR"),
            "argv0": sys.argv[0],
        })

    @dsl.component(base_image="python:3.11")
    def fail():
        raise ValueError("boom: the step failed")

    @dsl.component(base_image="python:3.11")
    def sleeper():
        import os, time
        print("step pid", os.getpid(), flush=True)
        time.sleep(120)
    """
)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    with WarmStart() as started:
        assert sys.executable == started.shim  # routed while the run lasts
        yield started
    assert sys.executable != started.shim and not os.path.exists(started.dir)


def _command(python: str, tmp_path, function: str) -> list[str]:
    module = tmp_path / "components.py"
    module.write_text(COMPONENTS)
    executor_input = {
        "inputs": {"parameterValues": {}},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(tmp_path / "output")}},
            "outputFile": str(tmp_path / "executor_output.json"),
        },
    }
    return [
        python,
        "-m",
        "kfp.dsl.executor_main",
        "--component_module_path",
        str(module),
        "--executor_input",
        json.dumps(executor_input),
        "--function_to_execute",
        function,
    ]


def _run(python: str, tmp_path, function: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TFOPT_TEST_VAR": "from-the-task"}
    return subprocess.run(
        _command(python, tmp_path, function),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _output(tmp_path) -> dict:
    with open(tmp_path / "executor_output.json") as fh:
        return json.loads(json.load(fh)["parameterValues"]["Output"])


def test_step_is_forked_from_the_preloaded_parent(warm, tmp_path):
    done = _run(warm.shim, tmp_path, "describe")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from the step" in done.stdout + done.stderr
    seen = _output(tmp_path)
    assert seen["tensorflow_preloaded"] is True
    assert "tfopt.client.warm_server" in seen["parent"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["var"] == "from-the-task"
    assert seen["argv0"].endswith("executor_main.py")


def test_the_same_step_cold_has_nothing_preloaded(warm, tmp_path):
    done = _run(warm._executable, tmp_path, "describe")
    assert done.returncode == 0, done.stderr
    seen = _output(tmp_path)
    assert seen["tensorflow_preloaded"] is False
    assert "warm_server" not in seen["parent"] and seen["var"] == "from-the-task"


def test_a_failing_step_exits_non_zero_with_its_traceback(warm, tmp_path):
    done = _run(warm.shim, tmp_path, "fail")
    assert done.returncode == 1
    assert "ValueError: boom: the step failed" in done.stdout + done.stderr


def _start_sleeper(warm, tmp_path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        _command(warm.shim, tmp_path, "sleeper"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("step pid"):
            return proc, int(line.split()[-1])
    raise AssertionError(f"the step never started (exit {proc.wait()})")


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_signal_to_the_shim_reaches_the_step_and_its_status_comes_back(warm, tmp_path):
    proc, step = _start_sleeper(warm, tmp_path)
    assert step != proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM  # as a cold step killed by SIGTERM
    assert _gone(step)


def test_a_killed_shim_takes_its_step_with_it(warm, tmp_path):
    proc, step = _start_sleeper(warm, tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    assert _gone(step)


def test_other_invocations_run_the_real_interpreter(warm):
    done = subprocess.run(
        [warm.shim, "-c", "import sys; print(sys.argv[1:], 'site' in sys.modules)", "a"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "['a'] True"


def test_without_a_server_a_step_starts_cold(tmp_path):
    with WarmStart() as started:
        assert started.proc is not None
        started.proc.kill()
        started.proc.wait()
        os.unlink(os.path.join(started.dir, "server.sock"))
        done = _run(started.shim, tmp_path, "describe")
    assert done.returncode == 0, done.stderr
    assert _output(tmp_path)["tensorflow_preloaded"] is False


def test_the_parents_log_is_kept_only_once_the_run_made_its_logs_directory(tmp_path):
    # tfopt run starts the parent before checking parameters: a run those checks stop
    # must leave nothing behind, a run that got going keeps the parent's stderr
    kept = tmp_path / "run" / "logs" / "warm-start.log"
    with WarmStart(str(kept)) as started:
        kept.parent.mkdir(parents=True)
        assert _run(started.shim, tmp_path, "describe").returncode == 0  # once it serves
        with open(started._log, "a") as stderr:  # the file the parent's stderr goes to
            print("parent's stderr", file=stderr)
    assert "parent's stderr" in kept.read_text()
    assert started.proc is not None and started.proc.returncode == 0  # left by itself
    dropped = tmp_path / "stopped" / "logs" / "warm-start.log"
    with WarmStart(str(dropped)) as stopped:
        temporary = stopped._log
        assert os.path.isfile(temporary)
    assert not os.path.exists(tmp_path / "stopped") and not os.path.exists(stopped.dir)
    # stopped during its imports, it does not finish them first (bad parameters: no wait)
    assert stopped.proc is not None and stopped.proc.returncode == -signal.SIGTERM
