"""Two processes writing one model repository at once: distinct versions, intact models.config.

The repository lock is an exclusive ``flock`` on ``<root>/.tfopt-repo.lock``;
these tests run real concurrent processes (and a SIGKILLed lock holder).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import repository
from tfopt.training import models

NAME = "digits"


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("repo_concurrency")
    info = schema.load_info(digits_dir)
    x, _ = input_pipeline.load_arrays(info, "test", limit=16)
    np.save(root / "x.npy", x)
    paths = []
    for i in range(5):
        m = models.build_model(models.ModelConfig(arch="mlp", width=4, depth=1), (8, 8, 1), 10)
        paths.append(models.save_model(m, str(root / f"m{i}")))
    return {"models": paths, "x": str(root / "x.npy")}


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_together(procs, go) -> None:
    """Wait until every process has imported TensorFlow, then let them all go at once."""
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()[-3000:]
    go.write_text("go")


WAIT = """
    import os, sys, time
    from tfopt._keras import tf
    tf.io.gfile.exists("/")
    print("ready", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.002)
    """


PUSHER = (
    WAIT
    + """
    import json
    from tfopt.deploy.serving import repository
    base, start, *models = sys.argv[1:]
    out = []
    for m in models:
        r = repository.push_model(m, base, "digits")
        out.append([m, r.version, r.created, r.content_sha256])
    print(json.dumps(out))
    """
)


def test_two_processes_pushing_get_distinct_versions(assets, tmp_path):
    base = str(tmp_path / "repo")
    m = assets["models"]
    go = tmp_path / "go"
    # m[4] is pushed by both: it must end up as exactly one version.
    procs = [
        _spawn(PUSHER, base, str(go), m[0], m[4], m[1]),
        _spawn(PUSHER, base, str(go), m[2], m[4], m[3]),
    ]
    _start_together(procs, go)
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
        results += json.loads(out.strip().splitlines()[-1])
    created = [r for r in results if r[2]]
    assert sorted(r[1] for r in created) == [1, 2, 3, 4, 5]  # distinct, no gaps
    assert repository.list_versions(base, NAME) == [1, 2, 3, 4, 5]
    same = [r for r in results if r[0] == m[4]]
    assert len(same) == 2 and same[0][1] == same[1][1]  # identical content: one version
    assert sum(r[2] for r in same) == 1
    for src, version, _, digest in results:  # every version holds exactly its source
        path = os.path.join(base, NAME, str(version))
        assert repository.content_hash(path) == digest
        assert repository.content_hash(src) == digest
    assert sorted(os.listdir(os.path.join(base, NAME))) == ["1", "2", "3", "4", "5"]


DEPLOYER = (
    WAIT
    + """
    import json
    import numpy as np
    from tfopt.deploy.serving import deploy
    base, start, label, xpath, *models = sys.argv[1:]
    x = np.load(xpath)
    out = []
    for m in models:
        # the default load timeout (120 s): two TF processes loading at once on a loaded
        # 2-core machine can take over a minute
        r = deploy.deploy(m, base, x, deploy.DeployConfig("digits", label=label,
                                                          smoke_examples=2))
        out.append([r.version, r.smoke_test])
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_two_concurrent_deploys_keep_models_config_consistent(assets, tmp_path):
    base = str(tmp_path / "repo")
    m = assets["models"]
    go = tmp_path / "go"
    procs = [
        _spawn(DEPLOYER, base, str(go), "stable", assets["x"], m[0], m[1]),
        _spawn(DEPLOYER, base, str(go), "canary", assets["x"], m[2], m[3]),
    ]
    _start_together(procs, go)
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)  # two deploys, each allowed 120 s to load
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    stable, canary = outs
    versions = [v for v, _ in stable + canary]
    assert sorted(versions) == [1, 2, 3, 4]
    assert all(s == "passed" for _, s in stable + canary)
    entries = sc.read_model_config(os.path.join(base, sc.MODELS_CONFIG))  # parses: intact
    assert [e.name for e in entries] == [NAME]
    labels = entries[0].label_map
    # Each label points at the last version its own deployer pushed: no lost update.
    assert labels == {"stable": stable[-1][0], "canary": canary[-1][0]}
    assert set(labels.values()) <= set(entries[0].versions)
    assert set(entries[0].versions) <= set(repository.list_versions(base, NAME))


def test_lock_is_exclusive_across_processes_and_released_on_sigkill(tmp_path):
    base = str(tmp_path / "repo")
    marker = tmp_path / "released"
    holder = _spawn(
        """
        import sys, time
        from pathlib import Path
        from tfopt.deploy.serving import repository
        with repository.repo_lock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(1.0)
            Path(sys.argv[2]).write_text("x")
        """,
        base,
        str(marker),
    )
    assert holder.stdout.readline().strip() == "locked"
    with repository.repo_lock(base):  # blocks until the holder releases
        assert marker.exists()
        with repository.repo_lock(base):  # re-entrant in one thread
            pass
    holder.wait(timeout=30)
    with open(os.path.join(base, repository.LOCK_FILE)) as fh:
        assert fh.read() == ""  # released locks leave no owner record

    killed = _spawn(
        """
        import sys, time
        from tfopt.deploy.serving import repository
        with repository.repo_lock(sys.argv[1]):
            print("locked", flush=True)
            time.sleep(120)
        """,
        base,
    )
    assert killed.stdout.readline().strip() == "locked"
    with (
        pytest.raises(Exception, match="locked by another writer.*pid="),
        repository.repo_lock(base, timeout_s=0.2),
    ):
        pass
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    with repository.repo_lock(base, timeout_s=5):  # the kernel dropped the dead holder's lock
        pass
