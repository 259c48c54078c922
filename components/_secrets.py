"""Kubernetes secrets as environment variables of a pipeline task (kfp-kubernetes).

Credentials never appear in code, params files or compiled YAML: a pipeline
names a Kubernetes secret and the keys to expose, and the cluster injects the
values when the step's pod starts. Only names are compiled into the YAML.

    task = deploy_tf_serving(...)
    use_secrets(task, {"tfopt-serving": {"token": "SERVING_TOKEN"}})
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tfopt.errors import ConfigError

_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS-1123 subdomain
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def use_secrets(task, secrets: Mapping[str, Mapping[str, str]]):
    """Expose ``{secret_name: {secret_key: ENV_VAR}}`` to ``task``; return the task.

    Raises:
        ConfigError: a secret name, key or variable name is malformed.
    """
    from kfp import kubernetes

    if not isinstance(secrets, Mapping) or not secrets:
        raise ConfigError("use_secrets: expected {secret_name: {secret_key: ENV_VAR}}")
    for name, keys in secrets.items():
        if not isinstance(name, str) or not _SECRET_NAME.match(name):
            raise ConfigError(f"use_secrets: secret name {name!r} is not a Kubernetes name")
        if not isinstance(keys, Mapping) or not keys:
            raise ConfigError(f"use_secrets: secret {name!r}: expected {{secret_key: ENV_VAR}}")
        for key, env in keys.items():
            if not isinstance(key, str) or not _SECRET_KEY.match(key):
                raise ConfigError(f"use_secrets: secret {name!r}: key {key!r} is not allowed")
            if not isinstance(env, str) or not _ENV_NAME.match(env):
                raise ConfigError(
                    f"use_secrets: secret {name!r}: environment variable {env!r} "
                    "must be UPPER_CASE letters, digits and '_'"
                )
        kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env=dict(keys))
    return task
