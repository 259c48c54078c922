"""Run a pipeline's steps in their containers: kfp.local.DockerRunner on this machine.

The engine is any Docker-compatible API, found in this order: ``DOCKER_HOST`` if it
answers, ``/var/run/docker.sock`` if it answers, else podman's API served for the
run (``podman system service`` on a socket in a temporary directory, stopped
afterwards) behind :mod:`tfopt.client.engine_proxy`, which keeps each container until
its exit code is read. What kfp's runner leaves out is set here, never patched in
kfp: the user (the image's UID 10001), a pipeline root and serving repository that
user can write, the host paths the parameters name, and the environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from tfopt.errors import ConfigError, TfoptError

IMAGE_UID = 10001  # images/Dockerfile's USER
_TITLE = "org.opencontainers.image.title"  # images/Dockerfile: "tfopt" or "tfopt-gpu"
DOCKER_SOCKET = "/var/run/docker.sock"
BUILD_HINT = "run `make images` (as root: it installs podman with images/engine.sh)"
# host settings the steps read; the rest of the host environment stays outside
_FORWARD_PREFIXES = ("TFOPT_", "TF_CPP_", "TF_ENABLE_ONEDNN")
# parameters that may name host files the steps read (mounted read-only at the same path)
_READ_PATHS = ("source", "weights_uri", "previous_summary", "champion_uri")
_WRITE_PATHS = ("serving_base_path",)


class EngineError(TfoptError, RuntimeError):
    """No container engine, or it lacks an image the pipeline names."""


def _answers(base_url: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # DockerException, requests' connection errors: not answering
        return False


@contextlib.contextmanager
def engine() -> Iterator[str]:
    """A Docker-compatible API's URL for the duration of the block (see the module doc)."""
    tried = []
    host = os.environ.get("DOCKER_HOST")
    if host:
        if _answers(host):
            yield host
            return
        tried.append(f"DOCKER_HOST={host} does not answer")
    if os.path.exists(DOCKER_SOCKET) and _answers(f"unix://{DOCKER_SOCKET}"):
        yield f"unix://{DOCKER_SOCKET}"
        return
    tried.append(f"{DOCKER_SOCKET} does not answer")
    if not shutil.which("podman"):
        raise EngineError(
            f"no container engine: {'; '.join(tried)}; podman is not installed ({BUILD_HINT})"
        )
    with _podman_service() as url:
        yield url


@contextlib.contextmanager
def _podman_service(timeout_s: float = 60.0) -> Iterator[str]:
    from tfopt.client.engine_proxy import EngineProxy

    tmp = tempfile.mkdtemp(prefix="tfopt-podman-")
    podman_sock = os.path.join(tmp, "podman.sock")
    log_path = os.path.join(tmp, "service.log")
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{podman_sock}"],
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(f"unix://{podman_sock}"):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as fh:
                    tail = fh.read().strip().splitlines()[-1:] or ["(no output)"]
                raise EngineError(
                    f"no container engine: `podman system service` did not answer on "
                    f"{podman_sock} ({tail[0]}); check `podman info` or run images/engine.sh"
                )
            time.sleep(0.2)
        with EngineProxy(os.path.join(tmp, "tfopt.sock"), podman_sock) as proxy:
            yield f"unix://{proxy.socket_path}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def pipeline_images(pipeline_spec: Any) -> list[str]:
    """The images a compiled pipeline's executors name, sorted."""
    from google.protobuf import json_format

    spec = json_format.MessageToDict(pipeline_spec)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return sorted({e["container"]["image"] for e in executors.values() if "container" in e})


def ensure_images(client: Any, images: list[str], say=print) -> None:
    """Fail unless every image is in the engine; never pull (nothing downloads at run time).

    The GPU image only exists where it was built from a CUDA base; on a machine
    without a GPU the train step may run in the CPU image instead: the CPU image
    is then tagged under the GPU name in this engine only, with one line saying so.
    """
    import docker

    from tfopt.client.console import gpu_visible
    from tfopt.components._image import BASE_IMAGE, GPU_IMAGE

    def present(name: str) -> bool:
        try:
            client.images.get(name)
            return True
        except docker.errors.ImageNotFound:
            return False

    missing = [image for image in images if not present(image)]
    # an earlier stand-in (a CPU build under the GPU name) follows the CPU image when rebuilt
    stand_in = (
        GPU_IMAGE in images
        and GPU_IMAGE not in missing
        and client.images.get(GPU_IMAGE).labels.get(_TITLE) == "tfopt"
    )
    # a digest-pinned reference names one pushed image: never stand in for it
    if (
        (GPU_IMAGE in missing or stand_in)
        and "@" not in GPU_IMAGE
        and not gpu_visible()
        and present(BASE_IMAGE)
    ):
        cpu = client.images.get(BASE_IMAGE)
        if GPU_IMAGE in missing or client.images.get(GPU_IMAGE).id != cpu.id:
            repo, _, tag = GPU_IMAGE.rpartition(":")
            cpu.tag(repo, tag, force=True)
            say(
                f"no {GPU_IMAGE} here and no GPU: the train step runs in {BASE_IMAGE} "
                f"(tagged {GPU_IMAGE} in this engine only; `podman rmi {GPU_IMAGE}` undoes it)"
            )
        if GPU_IMAGE in missing:
            missing.remove(GPU_IMAGE)
    if missing:
        raise EngineError(
            f"image(s) {', '.join(missing)} not in the container engine; build them: "
            f"{BUILD_HINT}, or images/build.sh (FLAVOURS=gpu for {GPU_IMAGE})"
        )


def _host_paths(params: dict[str, Any], output_dir: str) -> tuple[list[str], list[str]]:
    """(read-only, writable) host paths the steps need, mounted at the same path."""
    read, write = [], [os.path.join(output_dir, "serving")]
    for name in _READ_PATHS + _WRITE_PATHS:
        value = str(params.get(name) or "")
        if not value or "://" in value or value.startswith("builtin:") or value == "none":
            continue  # "none": champion_uri's keyword, no path
        if not os.path.isabs(value):
            raise ConfigError(
                f"{name}={value!r}: with --runner docker a local path must be absolute "
                "(steps run in containers with another working directory)"
            )
        if name in _WRITE_PATHS:
            write.append(value)
        elif os.path.exists(value):
            read.append(value)
    return read, sorted(set(write))


def _writable_by_image_user(paths: list[str]) -> str:
    """Let the containers' user write ``paths``; return the user the containers run as.

    As root, the directories are handed to the image's UID (files the steps write
    are owned by it either way). Otherwise containers run as the caller, so the
    files they write stay the caller's (HOME is set to /tmp for that user).
    """
    if os.geteuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    for path in paths:
        os.makedirs(path, exist_ok=True)
        os.chown(path, IMAGE_UID, IMAGE_UID)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), IMAGE_UID, IMAGE_UID, follow_symlinks=False)
    return f"{IMAGE_UID}:{IMAGE_UID}"


def container_environment(user: str) -> dict[str, str]:
    """The host's TFOPT_* / TF log settings, and a HOME the container's user owns."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if user != f"{IMAGE_UID}:{IMAGE_UID}":
        env["HOME"] = "/tmp"
        env["KERAS_HOME"] = "/tmp/.keras"
        env["XDG_CACHE_HOME"] = "/tmp/.cache"
    return env


@contextlib.contextmanager
def runner(output_dir: str, params: dict[str, Any], pipeline_spec: Any) -> Iterator[Any]:
    """A ``kfp.local.DockerRunner`` for one run of ``pipeline_spec`` into ``output_dir``.

    Checks the engine and the images before any step; ``DOCKER_HOST`` points at
    the engine for the block (kfp's client reads it), and is restored after.
    """
    import docker
    from docker.types import Mount
    from kfp import local

    read, write = _host_paths(params, output_dir)
    with engine() as url:
        client = docker.DockerClient(base_url=url, timeout=120)
        try:
            ensure_images(client, pipeline_images(pipeline_spec))
        finally:
            client.close()
        user = _writable_by_image_user([os.path.join(output_dir, "artifacts"), *write])
        mounts = [Mount(p, p, type="bind", read_only=True) for p in read]
        mounts += [Mount(p, p, type="bind") for p in write]
        previous = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = url
        try:
            yield local.DockerRunner(
                user=user, environment=container_environment(user), mounts=mounts
            )
        finally:
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous
