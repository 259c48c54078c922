"""A local Artifact Registry KFP repository, reached at its real addresses.

``kfp.registry.RegistryClient`` uploads to and downloads from
``https://LOCATION-kfp.pkg.dev/PROJECT/REPO`` and reads versions and tags from
``https://artifactregistry.googleapis.com/v1/...``; ``aiplatform.PipelineJob`` fetches a
template from the same ``kfp.pkg.dev`` URI. Both go through ``HTTPS_PROXY``: this stand-in
is that proxy. It answers ``CONNECT`` for those two hosts, speaks TLS with a throw-away
certificate for them (tests point ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` at
``cert_file``) and serves the repository API on the tunnel: upload (multipart ``content``
and ``tags``; the version is the content's sha256, as in Artifact Registry, so the same
file uploaded twice is one version), download by version or tag, get / list versions,
list / create / update tags. Every request is recorded in ``calls``.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import hashlib
import http.server
import json
import os
import ssl
import tempfile
import threading
import urllib.parse

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTS = ("*.pkg.dev", "artifactregistry.googleapis.com")


def _certificate(directory: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_file, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_file, key_file


class RegistryStandIn:
    """``proxy_url`` is the HTTPS proxy; ``packages[package][version]`` holds the uploaded
    bytes, ``tags[package][tag]`` the version each tag names."""

    def __init__(self, project: str = "test-project", location: str = "us-central1"):
        self.project, self.location = project, location
        self.calls: list[tuple[str, str, str]] = []  # (method, host, path)
        self.packages: dict[str, dict[str, bytes]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.created: dict[str, str] = {}  # version resource -> create time
        self.cert_file, key_file = _certificate(tempfile.mkdtemp(prefix="registry-standin-"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            host = ""

            def do_CONNECT(self):  # the client's tunnel: TLS with our certificate inside
                host = self.path.split(":")[0]
                if not (host.endswith("-kfp.pkg.dev") or host == HOSTS[1]):
                    self.send_error(403, f"the stand-in serves no {host}")
                    return
                self.send_response(200, "Connection Established")
                self.end_headers()
                self.connection = context.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb", self.rbufsize)
                self.wfile = self.connection.makefile("wb", 0)
                self.host = host
                self.close_connection = False

            def _serve(self, verb: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.calls.append((verb, self.host, self.path))
                status, ctype, payload = outer.handle(
                    verb, self.host, self.path, self.headers.get("Content-Type", ""), body
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_PATCH(self):
                self._serve("PATCH")

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.proxy_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def host(self) -> str:
        """The repository host of ``repo``'s RegistryClient (``…/PROJECT/REPO``)."""
        return f"https://{self.location}-kfp.pkg.dev/{self.project}"

    def versions(self, package: str) -> list[str]:
        return list(self.packages.get(package, {}))

    # ------------------------------------------------------------ the API
    def handle(self, verb: str, host: str, path: str, ctype: str, body: bytes):
        url = urllib.parse.urlsplit(path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if host.endswith("-kfp.pkg.dev"):
            if verb == "POST" and len(parts) == 2:
                return self._upload(parts[1], ctype, body)
            if verb == "GET" and len(parts) == 4:
                return self._download(parts[2], parts[3])
            return 404, "text/plain", b"not found"
        # artifactregistry.googleapis.com/v1/projects/P/locations/L/repositories/R/packages/PKG/...
        if len(parts) < 9 or parts[7] != "packages":
            return 404, "application/json", b"{}"
        repo, package, rest = "/".join(parts[1:7]), parts[8], parts[9:]
        query = dict(urllib.parse.parse_qsl(url.query))
        if rest[:1] == ["versions"]:
            if len(rest) == 1:
                found = [self._version(repo, package, v) for v in self.versions(package)]
                return self._json(200, {"versions": found})
            if rest[1] not in self.packages.get(package, {}):
                return self._json(404, {"error": {"code": 404, "message": "version not found"}})
            return self._json(200, self._version(repo, package, rest[1]))
        if rest[:1] == ["tags"]:
            tags = self.tags.setdefault(package, {})
            if verb == "GET" and len(rest) == 1:
                return self._json(200, {"tags": [self._tag(repo, package, t) for t in tags]})
            tag = query.get("tagId") if len(rest) == 1 else rest[1]
            version = json.loads(body or b"{}").get("version", "").rsplit("/", 1)[-1]
            if version not in self.packages.get(package, {}):
                return self._json(404, {"error": {"code": 404, "message": "no such version"}})
            if verb == "POST" and tag in tags:
                return self._json(409, {"error": {"code": 409, "message": "tag exists"}})
            tags[tag] = version
            return self._json(200, self._tag(repo, package, tag))
        return self._json(404, {})

    @staticmethod
    def _json(status: int, obj) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(obj).encode()

    def _upload(self, repo: str, ctype: str, body: bytes):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + body
        )
        fields = {
            p.get_param("name", header="content-disposition"): p for p in message.iter_parts()
        }
        content = fields["content"].get_payload(decode=True)
        package = yaml.safe_load(content.split(b"\n---\n")[0])["pipelineInfo"]["name"]
        version = "sha256:" + hashlib.sha256(content).hexdigest()
        self.packages.setdefault(package, {})[version] = content
        self.created.setdefault(
            f"{package}/{version}", datetime.datetime.now(datetime.UTC).isoformat()
        )
        tags = fields["tags"].get_content().strip() if "tags" in fields else ""
        for tag in filter(None, tags.split(",")):
            self.tags.setdefault(package, {})[tag] = version
        return 200, "text/plain", f"{package}/{version}".encode()

    def _download(self, package: str, ref: str):
        version = ref if ref.startswith("sha256:") else self.tags.get(package, {}).get(ref, "")
        content = self.packages.get(package, {}).get(version)
        if content is None:
            return 404, "text/plain", b"not found"
        return 200, "application/x-yaml", content

    def _version(self, repo: str, package: str, version: str) -> dict:
        tags = [
            self._tag(repo, package, t)
            for t, v in self.tags.get(package, {}).items()
            if v == version
        ]
        return {
            "name": f"{repo}/packages/{package}/versions/{version}",
            "createTime": self.created.get(f"{package}/{version}", ""),
            "relatedTags": tags,
        }

    def _tag(self, repo: str, package: str, tag: str) -> dict:
        version = self.tags[package][tag]
        return {
            "name": f"{repo}/packages/{package}/tags/{tag}",
            "version": f"{repo}/packages/{package}/versions/{version}",
        }
