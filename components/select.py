"""Select component: apply the policy, write summary / reports / model card, bless or not.

It returns ``blessed``, which gates the deploy branch; a single return value (not a
NamedTuple) because KFP's local runner resolves ``dsl.If`` conditions only on outputs
named ``Output``. The selected name is in the summary and every output's metadata.
``selected_model`` is a copy of the selected candidate (SavedModel directory or
``.tflite`` file), written only when one was selected. The candidate inputs are
optional, one per variant of the registry (a generated signature, as ``evaluate``'s):
the copy reads the files KFP delivered to this step (needed on Kubeflow with MinIO/S3);
without them the path recorded by the evaluation step is used (local runner, /gcs).
"""

from tfopt import registry
from tfopt.components import _generate
from tfopt.components._generate import Param
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.evaluation.select import SelectionPolicy

select = _generate.component(
    "select",
    "Pick one candidate under the policy; return blessed, which gates deployment.",
    [
        Param("evaluations", "Input[Artifact]", "The evaluate step's records."),
        Param("summary", "Output[Artifact]", "summary.json: every candidate, the pick, why."),
        Param("report_markdown", "Output[Markdown]", "The comparison report (Markdown)."),
        Param("report_html", "Output[HTML]", "The comparison report with its plots (HTML)."),
        Param("model_card", "Output[Markdown]", "The selected model's model card."),
        Param("metrics", "Output[Metrics]", "The selected candidate's figures."),
        Param("confusion_matrix", "Output[ClassificationMetrics]", "The selected one's."),
        Param("selected_model", "Output[Model]", "A copy of the selected candidate."),
        Param("pipeline_name", "str", "Recorded in the summary and model card.", "tfopt-optimize"),
        Param(
            "baseline",
            "str",
            "The candidate the accuracy drop is measured against.",
            registry.BASELINE,
        ),
        *_generate.from_config(
            SelectionPolicy,
            "max_accuracy_drop",
            "max_size_bytes",
            "max_latency_ms_p99",
            "objective",
            "previous",
            "min_accuracy_change",
            "change_mode",
            "deploy_target",
            "min_accuracy",
            "min_f1",
            rename={"previous": "previous_summary"},
        ),
        Param(
            "baseline_model", "Input[Model]", "The baseline model (to copy when selected).", None
        ),
        *_generate.candidate_inputs(registry.names()),
    ],
    "args = dict(locals())\nfrom tfopt.components import _select\nreturn _select.run(args)",
    returns="bool",
)
