"""Evaluate component: every candidate model on the test split, in one process.

Each variant of the registry (``tfopt.registry``) is an optional input named as the
variant, in evaluation order; a skipped or absent one is left out. The signature is
generated (``components/_generate.py``): KFP reads it, and a new technique's variants
appear here by themselves. One step (rather than one per candidate) pays TensorFlow's
start-up once. A candidate that cannot be loaded or run is recorded with its error.
"""

from tfopt import registry
from tfopt.components import _generate
from tfopt.components._generate import Param
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.evaluation.evaluate import EvalConfig

evaluate = _generate.component(
    "evaluate",
    "Measure quality, size, latency, throughput and memory of every candidate.",
    [
        Param("dataset", "Input[Dataset]", "The ingested dataset (its test split is used)."),
        Param("baseline", "Input[Model]", "The trained (or imported) model."),
        Param("evaluations", "Output[Artifact]", "One record per candidate (JSON)."),
        Param("metrics", "Output[Metrics]", "Each candidate's figures."),
        *_generate.candidate_inputs(registry.names()),
        Param(
            "validation",
            "Input[Artifact]",
            "The validate-data step's result: its champion is evaluated beside the candidates.",
            None,
        ),
        *_generate.from_config(
            EvalConfig,
            "latency_iterations",
            "latency_warmup",
            "latency_min_seconds",
            "num_threads",
            "throughput_batch_size",
            "throughput_iterations",
        ),
    ],
    "args = dict(locals())\nfrom tfopt.components import _evaluate\n_evaluate.run(args)",
)
