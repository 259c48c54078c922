"""Model discovery of the local server against TF Serving's file-system source.

Each test builds its own half_plus_two SavedModels (``serving_fidelity_models``)
in a repository laid out as TF Serving finds it and checks what is served.
Source: tensorflow/serving ``sources/storage_path/file_system_storage_path_source.cc``
(version names, policies), ``model_servers/server_core.cc`` (models.config,
labels), ``model_servers/get_model_status_impl.cc`` (status of failed loads).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import serving_fidelity_models as fm

from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import server

from helpers.waiting import wait_until

X = np.array([[1.0], [2.0], [5.0]], np.float32)


def _serve(root, names, **kw) -> server.ModelServer:
    kw.setdefault("poll_seconds", 60.0)
    return server.ModelServer(str(root), names, **kw).start()


def _y(g, name, **kw) -> tuple[np.ndarray, int]:
    p = g.predict(name, X, **kw)
    return p.outputs["y"].reshape(-1), p.version


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Versions 1..3 of half_plus_two with offsets b = 10, 20, 30 (so answers tell them apart)."""
    src = tmp_path_factory.mktemp("hpt_src")
    return {v: fm.half_plus_two(str(src / str(v)), b=10.0 * v) for v in (1, 2, 3)}


def _link(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.symlink(src, dst)


def test_zero_padded_versions_are_served_and_other_children_ignored(tmp_path, versions):
    """safe_strto64 parses ``00000123`` as 123; ``tmp``, ``12a``, ``v2`` are not versions
    (file_system_storage_path_source.cc ParseVersionNumber / IndexChildrenByVersion)."""
    base = tmp_path / "repo" / "hpt"
    _link(versions[1], str(base / "00000123"))
    for other in ("tmp", "12a", "v2", ".7.tmp-upload"):
        _link(versions[2], str(base / other))
    (base / "README").write_text("not a version")
    srv = _serve(tmp_path / "repo", "hpt")
    try:
        with clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}") as g:
            assert g.status("hpt") == {123: "AVAILABLE"}
            y, version = _y(g, "hpt")
            assert version == 123
            np.testing.assert_allclose(y, 0.5 * X.reshape(-1) + 10.0)
            assert _y(g, "hpt", version=123)[1] == 123
        r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        # The REST path's version goes through SimpleAtoi too: /versions/00000123 is 123.
        code, doc = r.request(
            "POST", "/v1/models/hpt/versions/00000123:predict", {"instances": [[1.0]]}
        )
        assert (code, doc) == (200, {"predictions": [[10.5]]})
        assert r.status("hpt")["model_version_status"][0]["version"] == "123"
    finally:
        srv.stop()


def test_duplicate_version_names_keep_the_later_one(tmp_path, versions):
    """``7`` and ``007`` are both version 7: TF Serving warns and loads the later child of
    the sorted listing (IndexChildrenByVersion), here ``7`` (b = 30)."""
    base = tmp_path / "repo" / "hpt"
    _link(versions[1], str(base / "007"))
    _link(versions[3], str(base / "7"))
    srv = _serve(tmp_path / "repo", "hpt", rest_port=-1)
    try:
        with clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}") as g:
            assert g.status("hpt") == {7: "AVAILABLE"}
            np.testing.assert_allclose(_y(g, "hpt")[0], 0.5 * X.reshape(-1) + 30.0)
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (dict(policy="latest", num_versions=2), {3: "AVAILABLE", 2: "AVAILABLE"}),
        (dict(policy="all"), {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}),
        (dict(policy="specific", versions=(1, 3)), {3: "AVAILABLE", 1: "AVAILABLE"}),
        (dict(policy="latest"), {3: "AVAILABLE"}),
    ],
    ids=["latest2", "all", "specific", "latest1"],
)
def test_version_policies(tmp_path, versions, entry, expected):
    """model_version_policy latest{num_versions} / all / specific{versions}
    (file_system_storage_path_source.cc AspireLatestVersions / AspireAllVersions /
    AspireSpecificVersions); an unaspired version is never loaded."""
    base = tmp_path / "repo" / "hpt"
    for v, path in versions.items():
        _link(path, str(base / f"{v:03d}"))
    cfg = str(tmp_path / "repo" / "models.config")
    sc.write_model_config(cfg, [sc.ModelEntry("hpt", str(base), **entry)])
    srv = _serve(tmp_path / "repo", [], config_file=cfg, rest_port=-1)
    try:
        with clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}") as g:
            assert g.status("hpt") == expected
            for v in (1, 2, 3):
                if v in expected:
                    np.testing.assert_allclose(
                        _y(g, "hpt", version=v)[0], 0.5 * X.reshape(-1) + 10.0 * v
                    )
            assert _y(g, "hpt")[1] == max(expected)  # no version: the highest served
    finally:
        srv.stop()


def test_labels_config_reload_several_models_and_base_paths(tmp_path, versions):
    """A model_config_list with two models at their own base paths (outside the root),
    version_labels, re-read on the poll interval (server_core.cc; the server's
    --model_config_file_poll_wait_seconds): a label moved in the file moves the answers."""
    other = tmp_path / "elsewhere"
    for v, path in versions.items():
        _link(path, str(other / "a" / str(v)))
    _link(versions[2], str(other / "b" / "0005"))
    cfg = str(tmp_path / "models.config")

    def write(canary: int) -> None:
        sc.write_model_config(
            cfg,
            [
                sc.ModelEntry(
                    "a",
                    str(other / "a"),
                    policy="specific",
                    versions=(1, 3),
                    labels=(("stable", 1), ("canary", canary)),
                ),
                sc.ModelEntry("b", str(other / "b")),
            ],
        )

    write(canary=3)
    (tmp_path / "root").mkdir()
    srv = _serve(tmp_path / "root", [], config_file=cfg, poll_seconds=0.2)
    try:
        with clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}") as g:
            assert g.status("a") == {3: "AVAILABLE", 1: "AVAILABLE"}
            assert g.status("b") == {5: "AVAILABLE"}
            assert _y(g, "a", label="stable")[1] == 1
            assert _y(g, "a", label="canary")[1] == 3
            r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
            got = r.predict("a", instances=[[2.0]], label="canary")
            assert got == {"predictions": [[31.0]]}
            write(canary=1)  # relabel on disk; the poll loop (not the test) picks it up
            wait_until(
                lambda: _y(g, "a", label="canary")[1] == 1,
                "the poll loop to move label canary to version 1",
            )
            code, doc = r.request(
                "POST", "/v1/models/a/labels/gold:predict", {"instances": [[1.0]]}
            )
            assert code == 400 and doc == {"error": "Unrecognized servable version label: gold"}
    finally:
        srv.stop()


def test_a_version_that_fails_to_load_is_reported_end_with_its_error(tmp_path, versions):
    """A numeric child without a SavedModel is aspired, fails to load, and GetModelStatus
    shows it END with the loader's NOT_FOUND (get_model_status_impl.cc copies the
    servable's load status; TF's loader: "Could not find SavedModel .pb or .pbtxt"),
    while the serving version stays up (availability_preserving_policy.cc unloads an
    unaspired version only once an aspired one is ready)."""
    base = tmp_path / "repo" / "hpt"
    _link(versions[1], str(base / "1"))
    srv = _serve(tmp_path / "repo", "hpt", max_load_retries=0)
    try:
        (base / "2" / "variables").mkdir(parents=True)
        srv.poll_once()
        r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        st = r.status("hpt")["model_version_status"]
        assert [s["version"] for s in st] == ["2", "1"]
        assert st[0]["state"] == "END" and st[0]["status"]["error_code"] == "NOT_FOUND"
        assert "Could not find SavedModel .pb or .pbtxt" in st[0]["status"]["error_message"]
        assert st[1] == {
            "version": "1",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        assert r.predict("hpt", instances=[[1.0]]) == {"predictions": [[10.5]]}
    finally:
        srv.stop()
