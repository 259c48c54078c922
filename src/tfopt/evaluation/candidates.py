"""The registry of candidate variants: one entry per model the pipeline can make.

The evaluation and selection components take one optional ``Input[Model]`` per
entry (named ``Variant.name``), the pipeline wires one step per entry and
switches it with ``Variant.switch``, and ``tests/compile/test_variant_registry.py``
checks that the components' signatures and the compiled pipeline agree with this
table. A new technique is one entry here plus its component.

Library code: no kfp import (the components and pipelines import this module).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfopt.checks import check_choice, check_str
from tfopt.errors import ConfigError

BASELINE = "baseline"  # the trained model every variant derives from, directly or not
FORMATS = ("saved_model", "tflite")
TECHNIQUES = ("tflite", "litert", "prune", "distill", "lowrank", "qat")
TFLITE_MODES = ("float32", "dynamic", "float16", "int8")
# LiteRT Quantizer recipes (tfopt.compression.litert_quantizer.RECIPES; a test keeps them equal)
LITERT_RECIPES = ("int8", "int16x8", "dynamic", "int4_weight_only", "mixed")
MODES = {"tflite": TFLITE_MODES, "litert": LITERT_RECIPES}


@dataclass(frozen=True)
class Variant:
    """One candidate model.

    Attributes:
        name: the candidate's name in ``summary.json`` and the component input name.
        technique: how it is made (the pipeline's step): ``tflite`` (conversion),
            ``prune``, ``distill``, ``lowrank`` or ``qat``.
        format: ``saved_model`` or ``tflite`` (what the evaluation step loads).
        base: the model it derives from: ``baseline`` or an earlier entry's name.
        switch: the pipeline's ``enable_*`` parameter, or "" when the variant has no
            switch of its own (it runs whenever its base does: a disabled base is
            skipped and so is everything made from it).
        mode: the TFLite conversion mode of a ``tflite`` variant or the LiteRT Quantizer
            recipe of a ``litert`` variant, else "".
        output: the output name of the step that makes it.
        task: the step's display name in the pipeline.
        default: the switch's default in the pipeline (off for variants that cost more
            run time than most users want by default).
    """

    name: str
    technique: str
    format: str
    base: str
    switch: str = ""
    mode: str = ""
    output: str = "tflite_model"
    task: str = ""
    default: bool = True

    def __post_init__(self):
        owner = f"Variant({self.name!r})"
        check_str(owner, "name", self.name)
        check_choice(owner, "technique", self.technique, TECHNIQUES)
        check_choice(owner, "format", self.format, FORMATS)
        if self.switch and not self.switch.startswith("enable_"):
            raise ConfigError(
                f"{owner}.switch={self.switch!r} is not allowed: expected 'enable_<name>' or ''"
            )
        if (self.technique in MODES) != bool(self.mode):
            raise ConfigError(
                f"{owner}.mode={self.mode!r} is not allowed: a tflite conversion needs one of "
                f"{', '.join(TFLITE_MODES)}, a litert quantization one of "
                f"{', '.join(LITERT_RECIPES)}, other techniques ''"
            )
        if self.mode:
            check_choice(owner, "mode", self.mode, MODES[self.technique])
        if not self.default and not self.switch:
            raise ConfigError(f"{owner}.default=False needs a switch of its own")
        if not self.task:
            object.__setattr__(self, "task", self.name.replace("_", "-"))


def _tflite(name: str, base: str, mode: str, switch: str = "") -> Variant:
    return Variant(name, "tflite", "tflite", base, switch, mode=mode)


# In evaluation order (the order of summary.json); a base comes before what derives from it.
VARIANTS: tuple[Variant, ...] = (
    _tflite("tflite_float32", BASELINE, "float32", "enable_tflite_float32"),
    _tflite("tflite_dynamic", BASELINE, "dynamic", "enable_tflite_dynamic"),
    _tflite("tflite_float16", BASELINE, "float16", "enable_tflite_float16"),
    _tflite("tflite_int8", BASELINE, "int8", "enable_tflite_int8"),
    Variant("pruned", "prune", "saved_model", BASELINE, "enable_pruning", output="pruned_model",
            task="prune"),
    _tflite("pruned_int8", "pruned", "int8"),
    Variant("distilled", "distill", "saved_model", BASELINE, "enable_distillation",
            output="student_model", task="distill"),
    _tflite("distilled_int8", "distilled", "int8"),
    Variant("lowrank", "lowrank", "saved_model", BASELINE, "enable_lowrank",
            output="lowrank_model"),
    _tflite("lowrank_int8", "lowrank", "int8"),
    Variant("qat_int8", "qat", "tflite", BASELINE, "enable_qat"),
    Variant("pqat_int8", "qat", "tflite", "pruned", "enable_qat"),
    # LiteRT Quantizer recipes on the float TFLite file: off by default (five more steps)
    *(Variant(f"litert_{recipe}", "litert", "tflite", "tflite_float32", "enable_litert_quantizer",
              mode=recipe, default=False) for recipe in LITERT_RECIPES),
)  # fmt: skip

NAMES: tuple[str, ...] = tuple(v.name for v in VARIANTS)
SWITCHES: tuple[str, ...] = tuple(dict.fromkeys(v.switch for v in VARIANTS if v.switch))
SWITCH_DEFAULTS: dict[str, bool] = {v.switch: v.default for v in VARIANTS if v.switch}


def get(name: str) -> Variant:
    """The registry entry called ``name``; a clear error naming the known ones otherwise."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise ConfigError(f"unknown variant {name!r}; variants: {', '.join(NAMES)}")


def lineage(name: str) -> tuple[str, ...]:
    """``name`` and the models it derives from, back to the baseline (``pqat_int8`` ->
    ``("pqat_int8", "pruned", "baseline")``)."""
    chain = [name]
    while chain[-1] != BASELINE:
        chain.append(get(chain[-1]).base)
    return tuple(chain)


def _check_registry(variants: tuple[Variant, ...]) -> None:
    seen = {BASELINE}
    for v in variants:
        if v.name in seen:
            raise ConfigError(f"variant {v.name!r} is registered twice (or is the baseline)")
        if v.base not in seen:
            raise ConfigError(
                f"variant {v.name!r} derives from {v.base!r}, which is not registered before it"
            )
        seen.add(v.name)


_check_registry(VARIANTS)


def on_by_default(name: str) -> bool:
    """Whether the default pipeline makes ``name``: its switch and its bases' are on."""
    return all(SWITCH_DEFAULTS.get(get(n).switch, True) for n in lineage(name) if n != BASELINE)
