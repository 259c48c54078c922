"""Steps 4 and 5 of a Vertex AI deployment: smoke-test the canary, then promote or roll back.

:func:`smoke_then_promote` is called by :func:`tfopt.deploy.vertex.deploy_model`
once the canary is deployed (or found deployed by an earlier attempt).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from tfopt.deploy.vertex_config import DeployConfig, DeployResult
from tfopt.deploy.vertex_target import call
from tfopt.deploy.vertex_traffic import (
    scaled_split,
    smoke_requests_needed,
    validate_traffic_split,
)

log = logging.getLogger(__name__)


def _prediction_problem(predictions: Sequence[Any], n: int) -> str:
    """'' if ``predictions`` look like ``n`` rows of finite numbers, else what is wrong."""
    if len(predictions) != n:
        return f"{len(predictions)} predictions for {n} instances"

    def flat(v):
        if isinstance(v, list | tuple):
            for item in v:
                yield from flat(item)
        else:
            yield v

    for i, row in enumerate(predictions):
        values = list(flat(row if isinstance(row, list | tuple) else [row]))
        if not values:
            return f"prediction {i} is empty"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return f"prediction {i} holds a non-finite or non-numeric value {v!r}"
    return ""


def smoke_then_promote(
    clients,
    config: DeployConfig,
    endpoint: str,
    uploaded,
    canary_id: str,
    others: list[str],
    current: dict[str, int],
    instances: list,
    restore: dict[str, int] | None = None,
) -> DeployResult:
    """4. Smoke-test the canary ``canary_id`` (``current``: the endpoint's split, ``others``:
    the other deployed models), then 5. promote it, or roll back to ``restore``
    (default: the others' current shares, scaled to 100)."""
    if restore is None:
        live = {k: v for k, v in current.items() if k != canary_id and v > 0}
        restore = scaled_split(live, 100) if live else {}
    budget = config.smoke_requests or smoke_requests_needed(max(current.get(canary_id, 0), 1))
    sent, answers, reason = _smoke_test(clients, endpoint, canary_id, instances, budget)
    result = DeployResult(
        model=uploaded.model,
        model_version_id=uploaded.model_version_id,
        endpoint=endpoint,
        deployed_model_id=canary_id,
        promoted=not reason,
        previous_split=restore,
        canary_split=current,
        final_split={},
        undeployed=[],
        smoke_requests=sent,
        canary_answers=answers,
        reason=reason,
    )
    if not reason:
        _promote(clients, config, result, others)
    elif not restore:  # the canary is all there is: undeploying it would serve nothing
        log.warning(
            "smoke test failed (%s); %s is the only model on %s, left deployed",
            reason,
            canary_id,
            endpoint,
        )
        result.final_split = current
    else:
        _roll_back(clients, config, result, others, restore)
    return result


def _smoke_test(
    clients, endpoint: str, canary_id: str, instances: list, budget: int
) -> tuple[int, int, str]:
    """4. Predict until the canary answers (at most ``budget`` requests).

    Returns (requests sent, answers by the canary, what went wrong or "").
    """
    from google.cloud import aiplatform_v1 as v1

    request = v1.PredictRequest(endpoint=endpoint)
    request.instances.extend(instances)
    sent = answers = 0
    reason = ""
    while sent < budget and not answers:
        sent += 1
        try:
            response = clients.predictions.predict(request=request, timeout=60)
        except Exception as exc:  # any failure of the live endpoint fails the canary
            reason = f"prediction {sent} failed: {exc}"
            break
        problem = _prediction_problem(
            v1.PredictResponse.to_dict(response)["predictions"], len(instances)
        )
        if problem:
            reason = (
                f"prediction {sent} (served by deployed model "
                f"{response.deployed_model_id or '?'}): {problem}"
            )
            break
        answers += response.deployed_model_id == canary_id
    if not reason and not answers:
        reason = f"the canary {canary_id} answered none of {sent} predictions"
    return sent, answers, reason


def _roll_back(
    clients, config: DeployConfig, result: DeployResult, others: list[str], restore: dict
) -> None:
    """5a. Undeploy the canary and restore the previous split (recorded in ``result``)."""
    from google.cloud import aiplatform_v1 as v1

    canary_id = result.deployed_model_id
    log.warning("smoke test failed (%s); rolling back %s", result.reason, canary_id)
    restore = validate_traffic_split(restore, others, "restored traffic split")
    op = call(
        "undeploy canary",
        clients.endpoints.undeploy_model,
        request=v1.UndeployModelRequest(
            endpoint=result.endpoint, deployed_model_id=canary_id, traffic_split=restore
        ),
    )
    call("undeploy canary", op.result, timeout=config.timeout_s)
    result.final_split = restore
    result.undeployed = [canary_id]


def _promote(clients, config: DeployConfig, result: DeployResult, others: list[str]) -> None:
    """5b. All traffic to the canary, then retire the previous models (recorded in ``result``)."""
    from google.cloud import aiplatform_v1 as v1

    canary_id, endpoint = result.deployed_model_id, result.endpoint
    final = validate_traffic_split({canary_id: 100}, [*others, canary_id], "promoted traffic split")
    call(
        "promote canary",
        clients.endpoints.update_endpoint,
        endpoint=v1.Endpoint(name=endpoint, traffic_split=final),
        update_mask={"paths": ["traffic_split"]},
        timeout=60,
    )
    result.final_split = final
    if config.undeploy_previous:
        for old in others:
            op = call(
                "undeploy previous model",
                clients.endpoints.undeploy_model,
                request=v1.UndeployModelRequest(
                    endpoint=endpoint, deployed_model_id=old, traffic_split={canary_id: 100}
                ),
            )
            call("undeploy previous model", op.result, timeout=config.timeout_s)
            result.undeployed.append(old)
    log.info(
        "promoted %s to 100%% on %s (undeployed %s)",
        canary_id,
        endpoint,
        result.undeployed or "none",
    )
