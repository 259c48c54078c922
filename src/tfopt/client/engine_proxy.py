"""A Docker-API proxy on a unix socket that keeps a container until its exit code is read.

kfp 2.17's ``DockerRunner`` starts every container with ``auto_remove=True``, streams
its logs, then calls ``wait``. A container that exits within about a second is
already gone by then: Docker answers 404 and kfp *assumes success* (exit code 0, even
for a failed step); podman 4.3 answers HTTP 500 "no such container" and the task
fails. Instead of translating errors, this proxy turns ``AutoRemove`` off in each
``POST /containers/create`` and removes the container itself once it has relayed
that container's ``wait`` answer (the real exit code), or when it is closed.
Everything else is relayed unchanged (HTTP/1.1, streamed bodies chunked).
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import re
import socket
import socketserver
import threading

log = logging.getLogger(__name__)

_CREATE = re.compile(r"^(/v[\d.]+)?/containers/create(\?|$)")
_WAIT = re.compile(r"^(/v[\d.]+)?/containers/([^/?]+)/wait(\?|$)")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    upstream: str
    kept: set[str]
    lock: threading.Lock


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # http.server names it so
        log.debug("engine proxy: " + format, *args)

    def address_string(self) -> str:  # unix sockets have no client address
        return "unix"

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        autoremove = False
        if self.command == "POST" and _CREATE.match(self.path) and body:
            spec = json.loads(body)
            autoremove = bool(spec.get("HostConfig", {}).get("AutoRemove"))
            if autoremove:
                spec["HostConfig"]["AutoRemove"] = False
                body = json.dumps(spec).encode()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = _UnixConnection(self.server.upstream)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            self.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            if self.command == "HEAD" or resp.status in (204, 304):
                self.send_header("Content-Length", "0")
                self.end_headers()
                data = b""
            elif resp.getheader("Content-Length") is not None:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:  # a stream (logs --follow, events): pass each piece on as it comes
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                data = b""
                while chunk := resp.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            upstream.close()
        if autoremove and resp.status == 201:
            with self.server.lock:
                self.server.kept.add(json.loads(data)["Id"])
        wait = _WAIT.match(self.path)
        if wait and self.command == "POST":
            self._remove_kept(wait.group(2))

    def _remove_kept(self, ident: str) -> None:
        with self.server.lock:
            match = next((c for c in self.server.kept if c.startswith(ident)), None)
            if match is None:
                return
            self.server.kept.discard(match)
        remove(self.server.upstream, match)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay  # noqa: N815  # http.server names


def remove(upstream: str, container: str) -> None:
    """Force-remove one container through the engine's socket; a gone one is fine."""
    conn = _UnixConnection(upstream, timeout=30)
    try:
        conn.request("DELETE", f"/containers/{container}?force=true")
        resp = conn.getresponse()
        resp.read()
        if resp.status not in (200, 204, 404):
            log.warning("could not remove container %s: HTTP %s", container[:12], resp.status)
    finally:
        conn.close()


class EngineProxy:
    """Serve ``socket_path`` in a thread, relaying to the engine at ``upstream``.

    A context manager; on exit it stops serving and removes the containers whose
    ``wait`` it never relayed (an interrupted run).
    """

    def __init__(self, socket_path: str, upstream: str) -> None:
        self.socket_path = socket_path
        self._server = _Server(socket_path, _Handler)
        self._server.upstream = upstream
        self._server.kept = set()
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tfopt-engine-proxy", daemon=True
        )

    def __enter__(self) -> EngineProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        for container in sorted(self._server.kept):
            remove(self._server.upstream, container)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
