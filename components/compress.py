"""Compression components: one per technique of the registry, generated from it.

Each takes the model to compress and the dataset, writes ``compressed_model`` (and
``metrics``; ``tensorboard`` when the technique trains), and has one input per setting
of the technique's config, with its default and description. A disabled step, or one
whose input was skipped, runs as a cheap no-op whose output says ``skipped``; a technique
that does not fit the model skips its variant with the reason (``_util``).
"""

from tfopt import registry
from tfopt.components import _generate
from tfopt.components._generate import Param
from tfopt.compression import techniques  # noqa: F401 - registers every technique


def inputs(t: registry.Technique) -> list[Param]:
    """The inputs and outputs of ``t``'s component (the fan-out's trial step reuses them)."""
    params = [
        Param("model", "Input[Model]", "The model to compress (its base variant)."),
        Param("dataset", "Input[Dataset]", "The ingested dataset (train split for fine-tuning "
              "and calibration, validation split for accuracy checks)."),
        Param("compressed_model", "Output[Model]", f"The {t.output_format} it makes."),
        Param("metrics", "Output[Metrics]", "What the technique measured."),
    ]  # fmt: skip
    if t.trains:
        params.append(Param("tensorboard", "Output[Artifact]", "TensorBoard logs of fine-tuning."))
    own = [v.name for v in t.variants if v.technique == t.name]
    params.append(Param("variant", "str", "The candidate's name in the summary.", own[0]))
    params += [_generate.from_setting(s) for s in t.settings]
    params.append(Param("enabled", "bool", "False: skip (a no-op step whose output says so).",
                        True))  # fmt: skip
    params += [
        Param("skip_non_contenders", "bool", "True: a no-op step, saying why, when neither "
              "this variant nor one made from it can be selected for deploy_target on "
              "objective.", False),
        Param("deploy_target", "str", "Where the pick goes (the formats it serves).",
              "tf_serving"),
    ]  # fmt: skip
    if not any(s.name == "objective" for s in t.settings):
        params.append(Param("objective", "str", "What the selection ranks by.", "smallest"))
    return params


def component(t: registry.Technique, name: str = "", extra: tuple[Param, ...] = ()):
    """``t``'s component (``name``: another name, ``extra``: more inputs, both for the
    search fan-out's flavour; ``_compress.run`` takes them)."""
    # locals() first: the import below would add a name to them
    body = "\n".join(
        ("args = dict(locals())", "from tfopt.components import _compress",
         f"_compress.run({t.name!r}, args)")
    )  # fmt: skip
    return _generate.component(name or t.name, t.summary, inputs(t) + list(extra), body)


# technique name -> its component
COMPONENTS = {t.name: component(t) for t in registry.techniques()}
