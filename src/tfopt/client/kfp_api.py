"""The Kubeflow Pipelines API as ``submit``, ``schedule``, ``publish`` and ``--wait`` reach it:
a checked ``kfp.Client`` and remote calls whose SDK errors become ``CloudError``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tfopt.checks import check_reachable
from tfopt.deploy.vertex import CloudError


def kfp_client(config):
    """A ``kfp.Client`` for ``config`` (a ``SubmitConfig``: its host and namespace) after
    checking that the API answers."""
    host = config.kfp_host()
    check_reachable(host, "the KFP API")
    try:
        with urllib.request.urlopen(f"{host}/apis/v2beta1/healthz", timeout=10) as resp:
            json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code not in (401, 403):  # auth is the client's business; anything else is not KFP
            raise CloudError(
                f"{host} does not answer as a KFP v2 API "
                f"(GET /apis/v2beta1/healthz -> HTTP {exc.code})"
            ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CloudError(f"{host} does not answer as a KFP v2 API: {exc}") from None
    import warnings

    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host, namespace=config.namespace or "kubeflow")


def _api_call(what: str, fn, *args, **kwargs):
    """Run a remote call; wrap SDK errors into CloudError naming the step."""
    try:
        return fn(*args, **kwargs)
    except CloudError:
        raise
    except Exception as exc:
        import kfp_server_api
        from google.api_core import exceptions as gexc

        if isinstance(
            exc,
            gexc.GoogleAPICallError | kfp_server_api.ApiException | ConnectionError | TimeoutError,
        ):
            raise CloudError(f"{what} failed: {exc}") from exc
        raise
