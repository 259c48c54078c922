"""A Keras 3 keras.applications model through the tfmot techniques (issue 30).

A user's Keras 3 MobileNetV2 (weights=None, alpha 0.35) saved as a ``.keras`` file: the
import translates it, and pruning and QAT (on the pruned model: pqat) each cover exactly
what the pre-flight report said they would, with a Keras 3 file beside every SavedModel
(low-rank plans the same layers in tests/unit/test_applications.py). The whole pipeline
on a Keras 3 model runs in tests/local/test_keras3_local.py (a residual CNN).
"""

from __future__ import annotations

import os

import pytest

from tfopt import model_info
from tfopt.compression import inspect, prune, qat
from tfopt.training import imported, keras3

from helpers.data import synthetic_images

K = keras3.k3()
pytestmark = pytest.mark.usefixtures("forget_keras3_origin")


@pytest.mark.slow
def test_keras3_mobilenet_v2_through_prune_and_qat(tmp_path):
    data = synthetic_images(str(tmp_path / "rgb32"), 96, (32, 32, 3), 10)
    K.utils.set_random_seed(0)
    src = str(tmp_path / "mobilenet_v2.keras")
    K.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10).save(
        src
    )
    base = str(tmp_path / "baseline")
    result = imported.import_model(src, data, base, imported.ImportConfig(input_range="unit"))
    assert result.keras["translated"] and result.keras["max_abs_diff"] <= keras3.TOLERANCE
    report = inspect.inspect_model(base, convert=False)
    cov = report["coverage"]
    assert report["keras"]["version"] == K.__version__

    pruned_dir = str(tmp_path / "pruned")
    pruned = prune.prune_model(base, data, pruned_dir, prune.PruneConfig(epochs=1))
    assert sorted(pruned.pruned_layers) == sorted(cov["techniques"]["prune"]["layers"])
    for path in (base, pruned_dir):
        assert model_info.read_model_info(path)["keras"]["keras3_file"] == keras3.KERAS3_FILE
        assert os.path.exists(os.path.join(path, keras3.KERAS3_FILE))
    config = qat.QatConfig(epochs=1, preserve_sparsity=True, representative_samples=20)
    q = qat.qat_model(pruned_dir, data, str(tmp_path / "pqat.tflite"), config)
    assert q.quantized_param_fraction == pytest.approx(cov["qat_param_fraction"])
    assert os.path.getsize(tmp_path / "pqat.tflite") > 0
