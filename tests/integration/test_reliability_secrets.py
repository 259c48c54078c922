"""No secrets in logs or artifacts: a small flow runs with credential-like variables set,
then every log line and every written file is searched for their values."""

import os
import subprocess
import sys
import textwrap

SECRETS = {
    "GOOGLE_APPLICATION_CREDENTIALS": "/fake/path-SECRETVALUE7f3a",
    "AWS_SECRET_ACCESS_KEY": "SECRET123awsZZ9",
    "AWS_ACCESS_KEY_ID": "AKIASECRETID0042",
    "KFP_TOKEN": "kfp-SECRET-token-5150",
    "HF_TOKEN": "hf_SECRETtokenQQ77",
}

FLOW = """
    import logging, sys
    import numpy as np
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from tfopt.data import ingest, input_pipeline
    from tfopt.training import models, train
    from tfopt.compression import tflite
    from tfopt.deploy.serving import deploy, repository
    root = sys.argv[1]
    info = ingest.ingest(root + "/ds", ingest.IngestConfig())
    result = train.train_model(root + "/ds", root + "/model", train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=8, depth=1), epochs=1, batch_size=256))
    tflite.convert_to_tflite(root + "/model", None, root + "/model.tflite",
                             tflite.TFLiteConfig(mode="float32"))
    x, _ = input_pipeline.load_arrays(info, "test", limit=8)
    summary = deploy.deploy_local(root + "/model", root + "/repo", "digits", x)
    print("SUMMARY", summary, flush=True)
    """


def test_credentials_never_reach_logs_or_artifacts(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, **SECRETS, "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FLOW), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smoke_test': 'passed'" in proc.stdout
    logs = proc.stdout + proc.stderr
    assert "tfopt." in logs and len(logs) > 1000  # the flow did log (DEBUG, TF info)
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    assert len(files) > 10
    assert any(f.endswith("models.config") for f in files)
    blobs = {f: open(f, "rb").read() for f in files}  # noqa: SIM115
    for name, value in SECRETS.items():
        assert value not in logs, f"{name}'s value appears in the logs"
        for f, raw in blobs.items():
            assert value.encode() not in raw, f"{name}'s value appears in {f}"
