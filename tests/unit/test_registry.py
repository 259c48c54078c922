"""The technique registry: entries are checked, names resolve, lineage reaches the baseline,
settings validate themselves, and a technique or variant that breaks a rule is refused."""

from dataclasses import dataclass

import pytest

from tfopt import registry
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.errors import ConfigError
from tfopt.settings import check_settings, setting, settings_of

# today's default menu, in evaluation order (summary.json's)
DEFAULT_RUN = (
    "tflite_float32", "tflite_dynamic", "tflite_float16", "tflite_int8", "pruned", "pruned_int8",
    "distilled", "distilled_int8", "lowrank", "lowrank_int8", "qat_int8", "pqat_int8",
)  # fmt: skip


def test_every_variant_derives_from_the_baseline_or_an_earlier_one():
    seen = {registry.BASELINE}
    for v in registry.variants():
        assert v.base in seen, v.name
        seen.add(v.name)
        assert registry.lineage(v.name)[-1] == registry.BASELINE
    assert registry.lineage("pqat_int8") == ("pqat_int8", "pruned", "baseline")
    assert len(set(registry.names())) == len(registry.names())
    assert registry.get("lowrank").format == "saved_model"
    assert registry.get("pqat_int8").settings == {"preserve_sparsity": True}


def test_the_default_run_makes_the_same_variants_in_the_same_order():
    on = tuple(n for n in registry.names() if registry.on_by_default(n))
    assert on == DEFAULT_RUN


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown variant 'sparse'; variants: tflite_float32, "):
        registry.get("sparse")
    with pytest.raises(ConfigError, match=r"unknown technique 'magic'; techniques: tflite, prune"):
        registry.get_technique("magic")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(switch="use_x"), r"switch='use_x' is not allowed: expected 'enable_<name>'"),
        (dict(default=False), r"default=False needs a switch of its own"),
        (dict(name=""), r"Variant\(''\)\.name=''"),
    ],
)
def test_bad_variants_are_rejected_by_field(kwargs, needle):
    fields = {"name": "x", "technique": "prune"}
    fields.update(kwargs)
    with pytest.raises(ConfigError, match=needle):
        registry.Variant(**fields)


def test_a_technique_without_a_registry_row_is_refused():
    @dataclass(frozen=True)
    class Cfg:
        k: int = setting(1, "k.", low=0, high=3)

    t = registry.Technique("sharpen", "Sharpen.", Cfg, apply=lambda *a: registry.Outcome())
    with pytest.raises(ConfigError, match=r"'sharpen' has no row in tfopt.registry.TECHNIQUE_MOD"):
        registry.register(t)


def test_settings_check_themselves_and_say_what_is_allowed():
    @dataclass(frozen=True)
    class Cfg:
        rate: float = setting(0.5, "Rate.", low=0.0, high=1.0, high_open=True, param="r")
        how: str = setting("a", "How.", choices=("a", "b"))
        n: int = setting(2, "Count.", low=1, high=9)

        def __post_init__(self):
            check_settings(self)

    assert [s.name for s in settings_of(Cfg)] == ["rate", "how", "n"]
    assert settings_of(Cfg)[0].allowed() == "[0.0, 1.0)" and settings_of(Cfg)[0].param == "r"
    with pytest.raises(ConfigError, match=r"Cfg.rate=1.0 is not allowed: expected a number in \["):
        Cfg(rate=1.0)
    with pytest.raises(ConfigError, match=r"Cfg.how='c' is not allowed: expected one of 'a', 'b'"):
        Cfg(how="c")
    with pytest.raises(ConfigError, match=r"Cfg.n=True is not allowed: expected an integer"):
        Cfg(n=True)
    with pytest.raises(ConfigError, match=r"setting default \[1\]: expected one of bool"):
        setting([1], "A list.")


def test_every_technique_declares_described_settings_with_valid_defaults():
    for t in registry.techniques():
        assert t.settings, t.name
        t.make_config({})  # the defaults pass the technique's own checks
        for s in t.settings:
            assert s.description.strip().endswith("."), (t.name, s.name)
        with pytest.raises(ConfigError, match=r"unknown setting\(s\) nonsense"):
            t.make_config({"nonsense": 1})


def test_a_pipeline_parameter_shared_by_techniques_is_declared_alike():
    by_param: dict[str, list] = {}
    for t in registry.techniques():
        for s in t.settings:
            if s.param:
                by_param.setdefault(s.param, []).append((t.name, s))
    for param, uses in by_param.items():
        first = uses[0][1]
        for name, s in uses[1:]:
            assert (s.type, s.default, s.low, s.high) == (
                first.type, first.default, first.low, first.high,
            ), (param, name)  # fmt: skip


def test_litert_recipes_are_the_quantizers_and_off_by_default():
    from tfopt.compression import litert_quantizer

    assert registry.LITERT_RECIPES == litert_quantizer.RECIPES
    litert = [v for v in registry.variants() if v.technique == "litert"]
    assert {v.mode for v in litert} == set(litert_quantizer.RECIPES)
    assert all(v.base == "tflite_float32" and not registry.on_by_default(v.name) for v in litert)
    assert registry.on_by_default("pqat_int8") and registry.on_by_default("tflite_int8")


def test_a_variant_contends_when_it_or_one_made_from_it_can_be_picked():
    def why(name, target="tf_serving", objective="smallest"):
        return registry.not_contending(name, target, objective)

    # TF Serving serves SavedModels: no TFLite variant, nor pruning (zeros stored as weights)
    assert why("tflite_int8") == "deploy target tf_serving serves saved_model only"
    assert why("qat_int8") == why("pqat_int8") == why("distilled_int8") == why("tflite_int8")
    assert why("pruned").startswith("objective smallest: a dense runtime stores and computes")
    assert why("pruned").endswith(", nor can a variant made from it be selected")
    assert why("pruned", objective="fastest").startswith("objective fastest: ")
    for name in ("distilled", "lowrank", "channel_pruned"):  # smaller and faster SavedModels
        assert why(name) == why(name, objective="fastest") == "", name
    assert why("pruned", objective="most_accurate") == ""  # fine-tuning may gain accuracy
    # a TFLite target: the SavedModels contend through their int8 children
    assert why("pruned", "tflite") == why("distilled", "tflite") == why("tflite_int8", "tflite")
    assert why("tflite_int8", "tflite") == ""
    assert why("clustered").startswith("objective smallest: clustered weights")
    assert why("pruned", "none") == why("clustered", "none") == ""  # their int8 children
