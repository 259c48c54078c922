"""The compression registry: techniques, their variants and lineage; formats, modes, targets.

Root module (no TensorFlow, no kfp): every stage may import it. Each technique is one
module under ``tfopt/compression`` that declares a :class:`Technique` (name, config
whose fields are its settings, variants, one entry point) and calls :func:`register`;
``tfopt.compression.techniques`` imports them in evaluation order. Everything else is
derived from the registry: the KFP components (``components/compress.py``), the
pipeline's wiring and parameters, ``evaluate`` / ``select``'s inputs, pre-flight,
``tfopt params``, inspect and the docs table (docs/architecture.md, "How to add a
technique").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tfopt.checks import check_choice, check_str
from tfopt.errors import ConfigError
from tfopt.settings import Setting, settings_of

BASELINE = "baseline"  # the trained model every variant derives from, directly or not
FORMATS = ("saved_model", "tflite")
TFLITE_MODES = ("float32", "dynamic", "float16", "int8")
LITERT_RECIPES = ("int8", "int16x8", "dynamic", "int4_weight_only", "mixed")
# Deploy target -> the formats it serves (TF Serving, Vertex and KServe load SavedModels).
DEPLOY_TARGET_FORMATS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "tf_serving": ("saved_model",),
        "vertex": ("saved_model",),
        "kserve": ("saved_model",),  # KServe's tensorflow format runs TF Serving
        "tflite": ("tflite",),
        "none": (),
    }
)
DEPLOY_TARGETS = tuple(DEPLOY_TARGET_FORMATS)
SELECTION_OBJECTIVES = ("smallest", "fastest", "most_accurate")  # what select ranks by
TARGET_NAMES = MappingProxyType(
    {
        "tf_serving": "TF Serving",
        "vertex": "Vertex AI",
        "kserve": "KServe",
        "tflite": "TFLite (edge devices)",
    }
)


@dataclass(frozen=True)
class Outcome:
    """What a technique's entry point returns.

    Attributes:
        metrics: numbers logged on the step's ``Metrics`` artifact.
        model: what goes into the output model's metadata (params, sparsity,
            quantization ...), beside name, format and base.
        notes: sentences for the report (why a fallback happened ...).
    """

    metrics: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    """One candidate model.

    Attributes:
        name: the candidate's name in ``summary.json`` and the evaluate / select input name.
        technique: the technique (pipeline step kind) that makes it.
        base: the model it derives from: ``baseline`` or an earlier variant's name.
        switch: the pipeline's ``enable_*`` parameter, or "" when the variant has no switch
            of its own (it runs whenever its base does: a skipped base skips what derives
            from it).
        settings: settings the variant fixes (``mode: int8``); they are not pipeline
            parameters for this variant.
        task: the step's display name (defaults to the name, kebab-case).
        default: the switch's default (off for variants most users do not want every run).
    """

    name: str
    technique: str
    base: str = BASELINE
    switch: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    task: str = ""
    default: bool = True

    def __post_init__(self):
        owner = f"Variant({self.name!r})"
        check_str(owner, "name", self.name)
        if self.switch and not self.switch.startswith("enable_"):
            raise ConfigError(
                f"{owner}.switch={self.switch!r} is not allowed: expected 'enable_<name>' or ''"
            )
        if not self.default and not self.switch:
            raise ConfigError(f"{owner}.default=False needs a switch of its own")
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if not self.task:
            object.__setattr__(self, "task", self.name.replace("_", "-"))

    @property
    def format(self) -> str:
        return get_technique(self.technique).output_format

    @property
    def mode(self) -> str:
        """The TFLite mode or LiteRT recipe the variant fixes, else ""."""
        return str(self.settings.get("mode", self.settings.get("recipe", "")))


@dataclass(frozen=True)
class Technique:
    """A compression technique, declared by its module under ``tfopt/compression``.

    Attributes:
        name: short name (the component's name: ``prune``, ``tflite`` ...).
        summary: one line: what it does (the component's description).
        config: frozen config dataclass; its :func:`tfopt.settings.setting` fields are
            the technique's settings.
        apply: the one entry point,
            ``apply(model_dir, dataset_dir, output_path, config, tensorboard_dir) -> Outcome``.
        variants: the candidates the technique's module declares (its own and children
            made by other techniques from them, such as ``pruned_int8``).
        output_format: ``saved_model`` or ``tflite``.
        trains: it fine-tunes (its step writes TensorBoard logs and needs Keras layers).
        needs_keras: it refuses an imported plain SavedModel (no Keras layers).
        improves: the selection objectives (``SELECTION_OBJECTIVES``) its variant, and a
            stronger setting of its knob, can win on against its base; a search is cut for
            the others, saying ``limits`` (``compression/search.py``), and with
            ``skip_non_contenders`` the variant is not made (:func:`not_contending`).
        limits: why it cannot win on the objectives it does not improve.
        resumes: the config setting that takes a model the technique made to train on from
            (distillation's ``student_init``), or "": a search's final then continues its
            winning trial's model for the epochs the trial did not train.
        plan: for the pre-flight report (``tfopt inspect``), a function
            ``plan(flat_keras_model, config) -> {layer name: (applies, why not)}``, the same
            planning the technique does before any training. None for techniques that work
            on the whole graph (TFLite conversion, LiteRT).
    """

    name: str
    summary: str
    config: type
    apply: Callable[..., Outcome]
    variants: tuple[Variant, ...] = ()
    output_format: str = "saved_model"
    trains: bool = False
    needs_keras: bool = False
    improves: tuple[str, ...] = ("smallest", "fastest")
    limits: str = ""
    resumes: str = ""
    plan: Callable[[Any, Any], dict[str, tuple[bool, str]]] | None = None

    def __post_init__(self):
        owner = f"Technique({self.name!r})"
        check_str(owner, "name", self.name)
        check_choice(owner, "output_format", self.output_format, FORMATS)
        for objective in self.improves:
            check_choice(owner, "improves", objective, SELECTION_OBJECTIVES)
        if self.resumes:
            names = {s.name for s in self.settings}
            if not {self.resumes, "epochs"} <= names:
                raise ConfigError(
                    f"{owner}.resumes={self.resumes!r}: its config needs that setting and "
                    f"'epochs' (has {', '.join(sorted(names))})"
                )

    @property
    def settings(self) -> tuple[Setting, ...]:
        return settings_of(self.config)

    def make_config(self, values: Mapping[str, Any]):
        """The config from setting values (missing ones take their defaults)."""
        from tfopt.settings import build

        return build(self.config, dict(values))


# The techniques in evaluation order (the order of summary.json), each with its module
# under tfopt/compression, which declares and registers it (tfopt.compression.techniques
# imports them all). A new technique is its module and one row here.
TECHNIQUE_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "tflite": "tflite",
        "prune": "prune",
        "channel_prune": "channel_prune",
        "distill": "distill",
        "lowrank": "lowrank",
        "qat": "qat",
        "litert": "litert_quantizer",
        "cluster": "cluster",
    }
)

_TECHNIQUES: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    """Add ``technique`` (called by its module when it is imported)."""
    if technique.name not in TECHNIQUE_MODULES:
        raise ConfigError(
            f"technique {technique.name!r} has no row in tfopt.registry.TECHNIQUE_MODULES "
            f"(rows: {', '.join(TECHNIQUE_MODULES)})"
        )
    old = _TECHNIQUES.get(technique.name)
    if old is not None and old.apply.__module__ != technique.apply.__module__:
        raise ConfigError(f"technique {technique.name!r} is registered twice")
    _TECHNIQUES[technique.name] = technique
    return technique


def check_complete() -> None:
    """Every technique is registered; variants are unique, each base is declared before
    what derives from it, and each variant fixes only settings of its technique."""
    missing = [n for n in TECHNIQUE_MODULES if n not in _TECHNIQUES]
    if missing:
        raise ConfigError(
            f"techniques not registered: {', '.join(missing)} "
            "(import tfopt.compression.techniques, which imports every technique module)"
        )
    seen = {BASELINE}
    for v in variants():
        if v.name in seen:
            raise ConfigError(f"variant {v.name!r} is registered twice (or is the baseline)")
        if v.base not in seen:
            raise ConfigError(
                f"variant {v.name!r} derives from {v.base!r}, which is not declared before it"
            )
        made_by = get_technique(v.technique)
        declared = {s.name: s for s in made_by.settings}
        for key, value in v.settings.items():
            if key not in declared:
                raise ConfigError(
                    f"variant {v.name!r} fixes {key!r}, not a setting of {made_by.name} "
                    f"(settings: {', '.join(declared)})"
                )
            declared[key].check(f"Variant({v.name!r}).settings", value)
        seen.add(v.name)


def _loaded() -> list[Technique]:
    if len(_TECHNIQUES) < len(TECHNIQUE_MODULES):
        check_complete()  # raises, naming what is missing
    return [_TECHNIQUES[n] for n in TECHNIQUE_MODULES]


def techniques() -> tuple[Technique, ...]:
    return tuple(_loaded())


def variants() -> tuple[Variant, ...]:
    """Every variant in evaluation order (the order of ``summary.json``)."""
    return tuple(v for t in _loaded() for v in t.variants)


def names() -> tuple[str, ...]:
    return tuple(v.name for v in variants())


def get_technique(name: str) -> Technique:
    try:
        return _TECHNIQUES[name]
    except KeyError:
        known = ", ".join(TECHNIQUE_MODULES)
        raise ConfigError(f"unknown technique {name!r}; techniques: {known}") from None


def get(name: str) -> Variant:
    """The variant called ``name``; a clear error naming the known ones otherwise."""
    for v in variants():
        if v.name == name:
            return v
    raise ConfigError(f"unknown variant {name!r}; variants: {', '.join(names())}")


def lineage(name: str) -> tuple[str, ...]:
    """``name`` and the models it derives from, back to the baseline (``pqat_int8`` ->
    ``("pqat_int8", "pruned", "baseline")``)."""
    chain = [name]
    while chain[-1] != BASELINE:
        chain.append(get(chain[-1]).base)
    return tuple(chain)


def _cannot_win(variant: Variant, deploy_target: str, objective: str) -> str:
    """Why ``variant`` itself cannot be selected for ``deploy_target`` on ``objective``:
    a format the target does not serve, or a technique that makes its base neither
    smaller nor faster (``Technique.improves``); "" when it can."""
    served = DEPLOY_TARGET_FORMATS.get(deploy_target, ())
    if served and variant.format not in served:
        return f"deploy target {deploy_target} serves {' or '.join(served)} only"
    t = get_technique(variant.technique)
    if objective != "most_accurate" and objective not in t.improves:
        return f"objective {objective}: {t.limits}"
    return ""


def not_contending(name: str, deploy_target: str, objective: str) -> str:
    """Why neither variant ``name`` nor any variant made from it can be selected for
    ``deploy_target`` on ``objective`` (``skip_non_contenders`` then skips its step), or ""
    when one of them can."""
    own = _cannot_win(get(name), deploy_target, objective)
    made_from = [v for v in variants() if name in lineage(v.name)[1:]]
    if not own or any(not _cannot_win(v, deploy_target, objective) for v in made_from):
        return ""
    return own + (", nor can a variant made from it be selected" if made_from else "")


def switches() -> dict[str, bool]:
    """Each ``enable_*`` switch and its default, in registry order."""
    return {v.switch: v.default for v in variants() if v.switch}


def on_by_default(name: str) -> bool:
    """Whether the default pipeline makes ``name``: its switch and its bases' are on."""
    defaults = switches()
    return all(defaults.get(get(n).switch, True) for n in lineage(name) if n != BASELINE)


def pipeline_settings() -> dict[str, Setting]:
    """Pipeline parameter -> the setting it feeds, across techniques (a parameter shared by
    several techniques, such as ``seed``, must be declared alike: a test checks)."""
    out: dict[str, Setting] = {}
    for t in _loaded():
        for s in t.settings:
            if s.param:
                out.setdefault(s.param, s)
    return out
