"""`tfopt run --runner docker` without an engine: the proxy, the checks before any step."""

import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

import pytest

from tfopt import __version__
from tfopt.client import docker as tfopt_docker
from tfopt.client.engine_proxy import EngineProxy
from tfopt.client.params import validate_params
from tfopt.errors import ConfigError


class _Engine(http.server.BaseHTTPRequestHandler):
    """A stand-in engine: records requests, answers like Docker for create/wait/delete."""

    protocol_version = "HTTP/1.1"
    seen: list = []  # noqa: RUF012  # shared by the handler's instances, reset per test

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", chunks: tuple = ()) -> None:
        self.send_response(status)
        if chunks:  # a streamed body, as logs --follow
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append(("POST", self.path, body))
        if self.path.startswith("/v1.41/containers/create"):
            self._answer(201, json.dumps({"Id": "c0ffee" * 4}).encode())
        else:
            self._answer(200, b'{"StatusCode": 3}')

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, None))
        if "/json" in self.path:  # docker-py inspects before streaming logs (tty or not)
            self._answer(200, b'{"Config": {"Tty": true}}')
        else:
            self._answer(200, chunks=(b"line one\n", b"line two\n"))

    def do_DELETE(self) -> None:
        self.seen.append(("DELETE", self.path, None))
        self._answer(204)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def proxied(tmp_path):
    _Engine.seen = []
    engine = _UnixServer(str(tmp_path / "engine.sock"), _Engine)
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    with EngineProxy(str(tmp_path / "proxy.sock"), str(tmp_path / "engine.sock")) as proxy:
        yield proxy
    engine.shutdown()
    engine.server_close()


def test_proxy_keeps_the_container_until_its_exit_status_is_read(proxied):
    import docker

    client = docker.APIClient(base_url=f"unix://{proxied.socket_path}", version="1.41")
    created = client.create_container(
        "img", ["true"], host_config=client.create_host_config(auto_remove=True)
    )
    assert created["Id"] == "c0ffee" * 4
    sent = _Engine.seen[0][2]
    assert sent["HostConfig"]["AutoRemove"] is False  # the engine never removes it itself
    logs = b"".join(client.logs(created["Id"], stream=True, follow=True))
    assert logs == b"line one\nline two\n"  # a chunked stream passes through whole
    assert client.wait(created["Id"])["StatusCode"] == 3  # the real status, not a 404
    deadline = time.monotonic() + 10  # removed right after the answer is relayed
    while _Engine.seen[-1][0] != "DELETE" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _Engine.seen[-1][:2] == ("DELETE", f"/containers/{created['Id']}?force=true")
    client.close()


def test_proxy_removes_on_close_what_it_kept(tmp_path):
    import docker

    _Engine.seen = []
    engine = _UnixServer(str(tmp_path / "engine.sock"), _Engine)
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    with EngineProxy(str(tmp_path / "p.sock"), str(tmp_path / "engine.sock")) as proxy:
        client = docker.APIClient(base_url=f"unix://{proxy.socket_path}", version="1.41")
        client.create_container("img", ["true"], host_config={"AutoRemove": True})
        client.close()
        assert not [s for s in _Engine.seen if s[0] == "DELETE"]
    assert [s[:2] for s in _Engine.seen if s[0] == "DELETE"] == [
        ("DELETE", f"/containers/{'c0ffee' * 4}?force=true")
    ]
    assert not os.path.exists(tmp_path / "p.sock")
    engine.shutdown()
    engine.server_close()


def test_no_engine_is_one_line_saying_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman on it
    monkeypatch.setattr(tfopt_docker, "DOCKER_SOCKET", str(tmp_path / "docker.sock"))
    with pytest.raises(tfopt_docker.EngineError) as err, tfopt_docker.engine():
        pass
    message = str(err.value)
    assert "\n" not in message and "does not answer" in message
    assert "podman is not installed" in message and "make images" in message


def test_relative_host_paths_are_refused_before_any_container(tmp_path):
    with pytest.raises(ConfigError, match=r"source='data/x.npz': .* must be absolute"):
        tfopt_docker._host_paths({"source": "data/x.npz"}, str(tmp_path))
    data = tmp_path / "x.npz"
    data.write_bytes(b"")
    read, write = tfopt_docker._host_paths(
        {"source": str(data), "serving_base_path": "gs://b/serving"}, str(tmp_path)
    )
    assert read == [str(data)] and write == [str(tmp_path / "serving")]


def test_runner_key_of_a_params_file_is_checked():
    assert "runner" not in validate_params({"runner": "docker", "epochs": 1})
    with pytest.raises(ConfigError, match=r"runner='kubernetes'; allowed: subprocess, docker"):
        validate_params({"runner": "kubernetes"})


def test_image_digest_pins_the_reference_and_is_checked():
    code = "from tfopt.components import _image; print(_image.BASE_IMAGE, _image.GPU_IMAGE)"
    digest = "sha256:" + "ab" * 32
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TFOPT_IMAGE_DIGEST": digest},
        capture_output=True,
        text=True,
    )
    base, gpu = run.stdout.split()
    assert base.endswith(f":{__version__}@{digest}")
    assert "@" not in gpu
    bad = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TFOPT_IMAGE_DIGEST": "latest"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "expected sha256: and 64 hex digits" in bad.stderr
