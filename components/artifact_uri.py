"""Artifact URI as a string parameter (lets dsl.OneOf pick a model across branches)."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def artifact_uri(artifact: Input[Artifact]) -> str:
    """Return ``artifact.uri``.

    Args:
        artifact: Any artifact; the step returns its URI as a string.
    """
    return artifact.uri
