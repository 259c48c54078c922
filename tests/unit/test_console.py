"""The console of a local run: counted progress lines, a live line on a terminal, failure tails.

The kfp output is replayed from two real runs (tests/unit/data/, made by
trim_kfp_log.py): the default pipeline, and one whose ingest step fails.
"""

import io
import json
import logging
import re
from pathlib import Path

import pytest
from google.protobuf import json_format

from tfopt.client.console import CLEAR, Progress, is_startup_noise, step_figure
from tfopt.client.runlog import RunLog
from tfopt.client.step_plan import Step, _UnknownError, evaluate_condition, plan_steps
from tfopt.pipelines.compile import pipeline_function

from helpers.waiting import wait_until

DATA = Path(__file__).parent / "data"
TASK_START = re.compile(r"Executing task '([^']+)'")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def spec() -> dict:
    return json_format.MessageToDict(pipeline_function("optimize").pipeline_spec)


def replay(path: Path, log: RunLog) -> list[str]:
    lines = path.read_text().splitlines()
    with log:
        for line in lines:
            log.line(line)
    return lines


def test_plan_counts_what_the_recorded_run_executed(spec):
    recorded = TASK_START.findall((DATA / "kfp_run_default.log").read_text())
    steps = plan_steps(spec, {})
    assert sorted(s.task for s in steps) == sorted(recorded)  # same tasks, 35 today
    by_task = {s.task: s for s in steps}
    assert by_task["tflite-4"].label == "tflite-int8"  # display names on the console
    assert "gate-blessed" in by_task["deploy-tf-serving"].groups  # decided at run time
    assert "deploy-vertex" not in by_task  # deploy_target=tf_serving: never runs
    # switched off by the parameters: tune, the LiteRT recipes, clustering and its children
    off = {s.label for s in steps if s.off}
    assert off == {
        "tune", "cluster", "clustered-int8", "cqat-int8", "litert-int8", "litert-int16x8",
        "litert-dynamic", "litert-int4-weight-only", "litert-mixed", "channel-prune",
        "channel-pruned-int8",
    }  # fmt: skip
    assert not {s.label for s in plan_steps(spec, {"enable_clustering": True}) if s.off} & {
        "cluster",
        "clustered-int8",
        "cqat-int8",
    }


def test_plan_follows_parameter_gates_through_sub_pipelines(spec):
    default = {s.task for s in plan_steps(spec, {})}
    vertex = {s.task for s in plan_steps(spec, {"deploy_target": "vertex"})}
    trainjob = {s.task for s in plan_steps(spec, {"training_target": "trainjob"})}
    assert vertex - default == {"deploy-vertex"}
    assert default - vertex == {"infra-validate", "deploy-tf-serving"}
    assert trainjob - default == {"train-trainjob"}
    assert default - trainjob == {"train", "artifact-uri"}


def test_conditions():
    ref = "inputs.parameter_values['pipelinechannel--{}']".format
    assert evaluate_condition(f"{ref('t')} == 'local'", {"pipelinechannel--t": "local"})
    assert not evaluate_condition(
        f"!({ref('t')} == 'local') && {ref('t')} == 'jobset'", {"pipelinechannel--t": "local"}
    )
    assert evaluate_condition(f"{ref('n')} >= 2 || false", {"pipelinechannel--n": 3})
    with pytest.raises(_UnknownError):  # a task output: decided at run time
        evaluate_condition(f"{ref('select-Output')} == true", {})


def test_plain_stream_one_counted_line_per_step_ending_at_n(tmp_path, spec):
    out = io.StringIO()  # CI, KFP, a pipe
    steps = plan_steps(spec, {})
    progress = Progress(steps, out)
    recorded = replay(DATA / "kfp_run_default.log", RunLog(str(tmp_path), out, progress, False))
    folded, *lines = out.getvalue().splitlines()
    off = [s.label for s in steps if s.off]
    # the steps switched off by the parameters fold into one line, and are not counted
    assert folded == "off (disabled by pipeline parameters): " + ", ".join(off)
    n = len(steps) - len(off)
    assert len(lines) == n
    assert [int(re.match(r"\[\s*(\d+)/", line).group(1)) for line in lines] == list(range(1, n + 1))
    assert all(f"/{n}] " in line and " ... done " in line for line in lines)
    # kfp orders steps with no dependency between them as it likes (ingest or train-config)
    assert (
        sum(re.match(rf"\[\s*\d+/{n}\] ingest \.\.\. done ", line) is not None for line in lines)
        == 1
    )
    assert "\x1b" not in out.getvalue()
    # the steps' output is not on the console, but in each step's log
    assert "Could not find cuda drivers" not in out.getvalue()
    assert "ingested builtin:digits" in (tmp_path / "ingest.log").read_text()
    assert len((tmp_path / "run.log").read_text().splitlines()) == len(recorded)


def test_figures_come_from_each_steps_executor_output(tmp_path):
    root = tmp_path / "artifacts"
    run = root / "tfopt-optimize-2026-01-01"
    outputs = json.loads((DATA / "executor_outputs.json").read_text())
    for task, output in outputs.items():
        (run / task).mkdir(parents=True)
        (run / task / "executor_output.json").write_text(json.dumps(output))
    out = io.StringIO()
    steps = [Step(task, task) for task in outputs]
    with Progress(steps, out, str(root)) as progress:
        for task in outputs:
            progress.started(task)
            progress.finished(task, ok=True)
    figures = {line.split("]")[1].split()[0]: line for line in out.getvalue().splitlines()}
    assert figures["prune"].endswith(", sparsity 0.80")
    assert figures["distill"].endswith(", compression 15.4x")
    assert figures["train"].endswith(", val accuracy 98.89%")
    assert figures["tune"].endswith(", off (disabled by pipeline parameter)")
    assert figures["select"].endswith(", 4 of 13 candidates acceptable")
    assert figures["deploy-tf-serving"].endswith(", smoke test passed")
    assert step_figure({}) == ""


def test_cache_hits_and_false_gates_still_end_at_n(tmp_path):
    out = io.StringIO()
    steps = [Step("train", "train"), Step("select", "select"), Step("deploy", "x", ("gate-b",))]
    log = RunLog(str(tmp_path), out, Progress(steps, out), echo=False)
    with log:
        # kfp.local's own wording (task_executor, enhanced_dag_orchestrator)
        log.line("Task train cache hit (key=0123456789ab); skipping execution.")
        log.line("12:00:00.000 - INFO - Executing task 'select'")
        log.line("12:00:01.000 - INFO - Task 'select' finished with status SUCCESS")
        log.line("Skipping conditional task gate-b (condition evaluated to False)")
    assert out.getvalue().splitlines() == [
        "[1/3] train cached",
        out.getvalue().splitlines()[1],
        "[3/3] x skipped (b is false)",
    ]
    assert re.fullmatch(r"\[2/3\] select \.\.\. done \d+\.\d s", out.getvalue().splitlines()[1])


def test_failure_shows_the_steps_last_lines_and_its_log(tmp_path, spec):
    out = io.StringIO()
    log = RunLog(str(tmp_path), out, Progress(plan_steps(spec, {}), out), False, True)
    lines = replay(DATA / "kfp_run_failed_ingest.log", log)
    folded, *shown = out.getvalue().splitlines()
    assert folded.startswith("off (disabled by pipeline parameters): tune, ")
    assert re.fullmatch(r"\[ 1/24\] ingest \.\.\. FAILED after \d+\.\d s", shown[0])
    tail = [line for line in shown if line.startswith("    | ")]
    assert len(tail) == 20
    assert tail[-1].endswith("feature column 'f3' has 'abc', which is not a number")
    assert not any(is_startup_noise(line[6:]) for line in tail)
    assert shown[len(tail) + 2] == f"    full log: {tmp_path / 'ingest.log'}"
    # the rest is skipped on one line, and the count ends at N/N
    assert shown[-1].startswith(
        "[ 2-24/24] skipped (an upstream step failed): validate-data, train-config, "
    )
    assert len(shown) == 1 + 1 + 20 + 1 + 1  # failed, "last 20 lines", 20, log, skipped
    assert "executor_main()" in (tmp_path / "ingest.log").read_text()
    assert len((tmp_path / "run.log").read_text().splitlines()) == len(lines)


def test_verbose_streams_everything_with_whole_progress_lines(tmp_path):
    out = io.StringIO()
    progress = Progress([Step("ingest", "ingest")], out, verbose=True)
    with RunLog(str(tmp_path), out, progress, echo=True):
        print("12:00:00.000 - INFO - Executing task 'ingest'")
        print("    reading the CSV")
        print("12:00:01.000 - INFO - Task 'ingest' finished with status SUCCESS")
    lines = out.getvalue().splitlines()
    assert lines[0] == "12:00:00.000 - INFO - Executing task 'ingest'"
    assert lines[1] == "[1/1] ingest ..."
    assert lines[2] == "    reading the CSV"
    assert re.fullmatch(r"\[1/1\] ingest \.\.\. done \d+\.\d s", lines[4])


def test_terminal_redraws_a_status_line(tmp_path):
    tty = Terminal()
    steps = [Step("train", "train"), Step("select", "select")]
    status = re.compile(
        re.escape(CLEAR) + r"\[1/2\] train \.\.\. \d+ s  \(0/2 done, \d+:\d\d elapsed\)"
    )
    with RunLog(str(tmp_path), tty, Progress(steps, tty, tick=0.01), echo=False) as log:
        log.line("12:00:00.000 - INFO - Executing task 'train'")
        # the start draws the line once; the ticker redraws it while the step runs
        wait_until(lambda: len(status.findall(tty.getvalue())) >= 3, "two redraws by the ticker")
        log.line("12:00:00.000 - INFO - Task 'train' finished with status SUCCESS")
    text = tty.getvalue()
    assert re.search(r"\r\x1b\[K\[1/2\] train \.\.\. done \d+\.\d s\n", text)
    assert re.search(re.escape(CLEAR) + r"\(1/2 done, \d+:\d\d elapsed\)", text)
    assert text.endswith(CLEAR)  # the live line is erased at the end


def test_kfp_records_stay_off_the_users_log_handler(tmp_path):
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        with RunLog(str(tmp_path), io.StringIO(), Progress([], io.StringIO()), echo=False):
            logging.getLogger().info("Skipping conditional task gate-x (condition ...)")
            logging.getLogger("tfopt.client.local").info("a tfopt message")
        logging.getLogger().info("after the run")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert seen.getvalue().splitlines() == ["a tfopt message", "after the run"]
    assert "gate-x" in (tmp_path / "run.log").read_text()


def test_startup_noise_is_recognised_but_errors_are_not():
    recorded = (DATA / "kfp_run_default.log").read_text().splitlines()
    noise = [line for line in recorded if is_startup_noise(line)]
    assert any("Could not find cuda drivers" in line for line in noise)
    assert any("absl::InitializeLog" in line for line in noise)
    assert not is_startup_noise("tfopt.errors.DataError: x.csv: line 3: bad")
    assert not is_startup_noise("E0000 00:00:17.1 123 saver.cc:9] Failed to write checkpoint")


def test_steps_at_the_same_time_each_end_on_one_whole_line_counted_in_order(tmp_path):
    tty = Terminal()
    steps = [Step("prune", "prune"), Step("distill", "distill"), Step("lowrank", "lowrank")]
    progress = Progress(steps, tty, tick=0, concurrent=True)
    with RunLog(str(tmp_path), tty, progress, echo=False) as log:
        log.line("12:00:00.000 - INFO - Executing task 'prune'")
        log.line("12:00:00.000 - INFO - Executing task 'distill'")
        assert progress.status_line().startswith("running: prune 0 s, distill 0 s  (0/3 done")
        log.line("12:00:01.000 - INFO - Task 'distill' finished with status SUCCESS")
        log.line("12:00:01.000 - INFO - Executing task 'lowrank'")
        log.line("12:00:02.000 - INFO - Task 'prune' finished with status SUCCESS")
        log.line("12:00:03.000 - INFO - Task 'lowrank' finished with status SUCCESS")
    ended = [line.split(CLEAR)[-1] for line in tty.getvalue().split("\n") if " done " in line]
    # numbered as they end: 1, 2, 3 (distill ended first), never a half-written line
    assert [re.match(r"\[(\d)/3\] (\w+) \.\.\. done", line).groups() for line in ended] == [
        ("1", "distill"),
        ("2", "prune"),
        ("3", "lowrank"),
    ]


def test_output_of_steps_on_two_threads_goes_to_each_steps_log(tmp_path):
    import threading

    progress = Progress([Step("a", "a"), Step("b", "b")], io.StringIO(), concurrent=True)
    log = RunLog(str(tmp_path), io.StringIO(), progress, echo=False)
    both_started = threading.Barrier(2)

    def step(name: str) -> None:
        log.line(f"12:00:00.000 - INFO - Executing task '{name}'")
        both_started.wait()
        for i in range(50):
            log.write(f"    {name} line {i}\n")
        log.write(f"    ValueError: {name} failed\n")

    with log:
        threads = [threading.Thread(target=step, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for name, other in (("a", "b"), ("b", "a")):
        text = (tmp_path / f"{name}.log").read_text()
        assert text.count(f"{name} line ") == 50 and f"{other} line" not in text
        assert log.errors[name] == f"ValueError: {name} failed"
