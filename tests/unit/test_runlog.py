"""A failed local run ends with one plain line: the step, the cause and the step's log."""

import io
import logging
import sys

from tfopt.client.runlog import RunLog, StepFailedError


def test_failure_names_step_cause_and_log_without_ansi(tmp_path):
    out = io.StringIO()  # not a terminal
    log = RunLog(str(tmp_path / "logs"), stream=out)
    with log:
        logging.getLogger("kfp.test").warning("Executing task \x1b[96m'ingest'\x1b[0m")
        print("Traceback (most recent call last):")
        print('  File "x.py", line 1, in <module>')
        print("tfopt.errors.DataError: /d/iris.csv: line 42: label 7 makes 8 classes")
        logging.getLogger("kfp.test").warning("Executing task 'train'")
        print("still fine")
        exc = RuntimeError(
            "Pipeline \x1b[95m'tfopt-optimize'\x1b[0m finished with status "
            "\x1b[91mFAILURE\x1b[0m. Inner task failed: \x1b[96m'ingest'\x1b[0m."
        )
        failure = log.failure(exc)
    assert sys.stdout is not log
    assert isinstance(failure, StepFailedError)
    log_path = tmp_path / "logs" / "ingest.log"
    assert str(failure) == (
        "step ingest failed: DataError: /d/iris.csv: line 42: label 7 makes 8 classes "
        f"(full log: {log_path})"
    )
    assert "line 42" in log_path.read_text() and "still fine" not in log_path.read_text()
    assert "still fine" in (tmp_path / "logs" / "run.log").read_text()
    assert "\x1b" not in out.getvalue() and "label 7" in out.getvalue()
