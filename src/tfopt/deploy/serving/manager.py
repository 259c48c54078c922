"""Version discovery and lifecycle, as TF Serving's file-system source and manager do it.

Follows ``sources/storage_path/file_system_storage_path_source.cc``: a version
is a child of the model's base path whose name parses as an int64
(``safe_strto64``: ``00000123`` is version 123); other children are ignored;
when two names give one number the later name wins. The version policy
(latest N, all, specific) picks the aspired versions; ``models.config``
(``model_config_list``) names the models, their base paths, policies and
labels, and is re-read at every poll. A new version is loaded (and its
warmup replayed) before an old one is unloaded; a version that fails to load
is reported END with its error, retried ``max_load_retries`` times.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field

from tfopt import fsutil
from tfopt._keras import tf
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import repository, warmup
from tfopt.deploy.serving.servable import Servable
from tfopt.deploy.serving.status import invalid, not_found

log = logging.getLogger(__name__)

STATE = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
_INT64 = re.compile(r"^\s*-?\d+\s*$")
_NOT_FOUND, _INVALID = 5, 3


def parse_version(name: str) -> int | None:
    """The version a directory name stands for (``safe_strto64``), else None."""
    name = name.rstrip("/")
    if not _INT64.match(name):
        return None
    v = int(name)
    return v if -(1 << 63) <= v < (1 << 63) else None


def version_dirs(base_path: str) -> dict[int, str]:
    """``{version: child name}`` under a base path (IndexChildrenByVersion)."""
    if not fsutil.exists(base_path):
        return {}
    names = tf.io.gfile.listdir(base_path) if fsutil.is_remote(base_path) else os.listdir(base_path)
    found: dict[int, str] = {}
    for child in sorted({n.rstrip("/").split("/")[0] for n in names}):
        v = parse_version(child)
        if v is not None:
            found[v] = child  # duplicates: the later (sorted) name wins
    return found


@dataclass
class ModelState:
    name: str
    base_path: str
    entry: serving_config.ModelEntry
    servables: dict[int, Servable] = field(default_factory=dict)
    states: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    # version -> (last error, failed attempts, monotonic time of the next retry)
    failed: dict[int, tuple[str, int, float]] = field(default_factory=dict)


class VersionManager:
    """The served models, their loaded versions and their states.

    Args:
        model_base_path: repository root; a model without a config entry is
            served from ``<root>/<name>``.
        model_names: models served whatever the config says.
        config_file: ``models.config``; every model it lists is served from its
            ``base_path`` (``<root>/<name>`` when that path does not exist here,
            e.g. a container path written for the production server).
        max_load_retries, load_retry_interval_s: see ``ModelServer``.
    """

    def __init__(
        self,
        model_base_path: str,
        model_names: list[str],
        config_file: str,
        max_load_retries: int,
        load_retry_interval_s: float,
    ):
        self.model_base_path = model_base_path
        self.config_file = config_file
        self.max_load_retries = max_load_retries
        self.load_retry_interval_s = load_retry_interval_s
        self.fixed = list(model_names)
        self.models = {
            n: self._new(serving_config.ModelEntry(n, self._default(n))) for n in model_names
        }
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()

    def _default(self, name: str) -> str:
        return repository.model_dir(self.model_base_path, name)

    def _new(self, entry: serving_config.ModelEntry) -> ModelState:
        return ModelState(entry.name, self._base(entry), entry)

    def _base(self, entry: serving_config.ModelEntry) -> str:
        if fsutil.exists(entry.base_path):
            return entry.base_path.rstrip("/")
        return self._default(entry.name)

    # --------------------------------------------------------------- polling
    def poll_once(self) -> None:
        """Re-read config and version directories; load new versions, then unload old ones."""
        with self._poll_lock:
            try:
                listed = serving_config.read_model_config(self.config_file)
                entries = {e.name: e for e in listed}
            except Exception as exc:  # a bad config keeps the previous one, as TF Serving does
                if fsutil.exists(self.config_file):
                    log.error("cannot read %s: %s", self.config_file, exc)
                entries = {n: m.entry for n, m in self.models.items()}
            for name in entries:
                repository.check_model_name(name, "models.config name")
            gone = [n for n in self.models if n not in entries and n not in self.fixed]
            for name in gone:  # removed from the config: unaspire every version
                self._sync(self.models[name], None)
                with self._lock:
                    del self.models[name]
            for name, entry in entries.items():
                if name not in self.models:
                    with self._lock:
                        self.models[name] = self._new(entry)
            for model in list(self.models.values()):
                entry = entries.get(model.name) or serving_config.ModelEntry(
                    model.name, model.base_path
                )
                model.base_path = self._base(entry)
                self._sync(model, entry)

    def _sync(self, model: ModelState, entry: serving_config.ModelEntry | None) -> None:
        dirs = version_dirs(model.base_path) if entry is not None else {}
        aspired = entry.aspired(list(dirs)) if entry is not None else []
        current = dict(model.servables)
        for v in list(model.failed):
            if v not in dirs:  # removed (or replaced) on disk: forget its failures
                del model.failed[v]
        for v in aspired:
            if v in current:
                continue
            if v in model.failed:
                _, attempts, retry_at = model.failed[v]
                if attempts > self.max_load_retries or time.monotonic() < retry_at:
                    continue  # given up (retry-then-give-up), or not yet time to retry
            self._set_state(model, v, "LOADING")
            path = os.path.join(model.base_path, dirs[v])
            try:
                servable = self._load(model.name, v, path)
            except Exception as exc:
                code, msg = _load_error(exc, path)
                attempts = model.failed.get(v, ("", 0, 0.0))[1] + 1
                final = attempts > self.max_load_retries
                # the state before the count: a reader that sees the attempts sees END too
                self._set_state(model, v, "END", code, msg)
                model.failed[v] = (msg, attempts, time.monotonic() + self.load_retry_interval_s)
                log.error(
                    "loading %s version %d failed (attempt %d of %d%s): %s",
                    model.name,
                    v,
                    attempts,
                    self.max_load_retries + 1,
                    "; giving up" if final else "",
                    msg,
                )
                continue
            model.failed.pop(v, None)
            current[v] = servable
            self._set_state(model, v, "AVAILABLE")
        new = {v: s for v, s in current.items() if v in aspired}
        if not new and model.servables and entry is not None:
            new = dict(model.servables)  # nothing aspired loaded: keep serving (availability)
        removed = [v for v in model.servables if v not in new]
        with self._lock:
            model.servables = new
            if entry is not None:
                model.entry = entry
        for v in removed:
            self._set_state(model, v, "UNLOADING")
            self._set_state(model, v, "END")
            log.info("unloaded %s version %d", model.name, v)

    def _set_state(
        self, model: ModelState, version: int, state: str, code: int = 0, message: str = ""
    ) -> None:
        with self._lock:
            model.states[version] = (state, code, message)

    def _load(self, name: str, version: int, path: str) -> Servable:
        t0 = time.perf_counter()
        if not (
            fsutil.exists(os.path.join(path, "saved_model.pb"))
            or fsutil.exists(os.path.join(path, "saved_model.pbtxt"))
        ):
            raise FileNotFoundError(path)
        servable = Servable(name, version, path)
        requests = warmup.read_warmup(path)
        for req in requests:
            inputs = {k: _tensor_to_array(v) for k, v in req.inputs.items()}
            servable.run(req.model_spec.signature_name, inputs, list(req.output_filter))
        servable.warmup_requests = len(requests)
        log.info(
            "loaded %s version %d in %.2fs (%d warmup requests replayed)",
            name,
            version,
            time.perf_counter() - t0,
            len(requests),
        )
        return servable

    # ---------------------------------------------------------------- lookup
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names, or the NOT_FOUND / INVALID_ARGUMENT TF Serving gives."""
        with self._lock:
            model = self.models.get(name)
            if model is not None and label:
                labels = model.entry.label_map
                if label not in labels:
                    raise invalid(f"Unrecognized servable version label: {label}")
                version = labels[label]
            servables = model.servables if model is not None else {}
            if version is None:
                if servables:
                    return servables[max(servables)]
                raise not_found(f"Servable not found for request: Latest({name})")
            if version in servables:
                return servables[version]
        raise not_found(f"Servable not found for request: Specific({name}, {version})")

    def states(self, name: str) -> tuple[dict, dict]:
        """(version -> (state, code, message), label -> version) of one model."""
        with self._lock:
            model = self.models.get(name)
            if model is None:
                return {}, {}
            return dict(model.states), model.entry.label_map


def _load_error(exc: Exception, path: str) -> tuple[int, str]:
    """(error code, message) a failed load is reported with in GetModelStatus."""
    if isinstance(exc, FileNotFoundError) and str(exc) == path:
        return _NOT_FOUND, (
            "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{path}. Check that the directory exists and that you have the right "
            "permissions for accessing it."
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return _INVALID, f"{type(exc).__name__}: {text}"


def _tensor_to_array(proto):
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:
        raise invalid(f"Cannot parse input tensor: {exc}") from None
