"""Inspect component: the pre-flight report of a model (``tfopt inspect``) as an artifact.

A step of its own after training, not part of it: the report (a model load, the
techniques' per-layer plans, SVDs) runs beside the compression steps instead of on
the train step's critical path.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def inspect_model(model: Input[Model], report: Output[Artifact], convert: bool = False):
    """Write what each technique can apply to, per layer, for ``model``.

    Args:
        model: The trained (or imported) model.
        report: The pre-flight report (JSON): per layer, what each technique can do.
        convert: Also convert to TFLite float32 and int8 and list the ops (adds seconds).
    """
    from tfopt.components import _util

    _util.write_inspect(report, model.path, convert=convert)
