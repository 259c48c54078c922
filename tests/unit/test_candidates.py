"""The variant registry: entries are checked, names resolve, lineage reaches the baseline."""

import pytest

from tfopt.errors import ConfigError
from tfopt.evaluation import candidates as registry
from tfopt.evaluation.candidates import Variant


def test_every_entry_derives_from_the_baseline_or_an_earlier_entry():
    seen = {registry.BASELINE}
    for v in registry.VARIANTS:
        assert v.base in seen, v.name
        seen.add(v.name)
        assert registry.lineage(v.name)[-1] == registry.BASELINE
    assert registry.lineage("pqat_int8") == ("pqat_int8", "pruned", "baseline")
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    assert registry.get("lowrank").output == "lowrank_model"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown variant 'sparse'; variants: tflite_float32, "):
        registry.get("sparse")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(technique="magic"), r"Variant\('x'\)\.technique='magic'"),
        (dict(format="onnx"), r"Variant\('x'\)\.format='onnx'"),
        (dict(switch="use_x"), r"switch='use_x' is not allowed: expected 'enable_<name>'"),
        (dict(technique="tflite", format="tflite"), "a tflite conversion needs one of"),
        (dict(mode="int8"), r"mode='int8' is not allowed"),
        (dict(technique="tflite", format="tflite", mode="int4"), r"mode='int4'"),
    ],
)
def test_bad_entries_are_rejected_by_field(kwargs, needle):
    fields = {"name": "x", "technique": "prune", "format": "saved_model", "base": "baseline"}
    fields.update(kwargs)
    with pytest.raises(ConfigError, match=needle):
        Variant(**fields)


def test_registry_order_and_duplicates_are_checked():
    a = Variant("a", "prune", "saved_model", "baseline")
    b = Variant("b", "qat", "tflite", "a")
    registry._check_registry((a, b))
    with pytest.raises(ConfigError, match="derives from 'a', which is not registered before it"):
        registry._check_registry((b, a))
    with pytest.raises(ConfigError, match="registered twice"):
        registry._check_registry((a, a))


def test_litert_recipes_are_the_quantizers_and_off_by_default():
    from tfopt.compression import litert_quantizer

    assert registry.LITERT_RECIPES == litert_quantizer.RECIPES
    litert = [v for v in registry.VARIANTS if v.technique == "litert"]
    assert {v.mode for v in litert} == set(litert_quantizer.RECIPES)
    assert all(v.base == "tflite_float32" and not registry.on_by_default(v.name) for v in litert)
    assert registry.on_by_default("pqat_int8") and registry.on_by_default("tflite_int8")
