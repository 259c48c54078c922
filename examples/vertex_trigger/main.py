"""Start a tfopt run from its published template when a new file lands in a bucket.

A Cloud Function (2nd gen) on the Cloud Storage "object finalized" event: each new data
file becomes the ``source`` of one run of the template ``tfopt publish`` put in Artifact
Registry. Deploy it (docs/submit.md, "Event trigger")::

    gcloud functions deploy tfopt-on-upload --gen2 --runtime python311 \\
      --region us-central1 --source examples/vertex_trigger --entry-point on_upload \\
      --trigger-event-filters type=google.cloud.storage.object.v1.finalized \\
      --trigger-event-filters bucket=my-data-bucket \\
      --service-account tfopt-trigger@my-project.iam.gserviceaccount.com \\
      --set-env-vars TFOPT_TEMPLATE=https://us-central1-kfp.pkg.dev/my-project/tfopt/tfopt-optimize/latest,TFOPT_PIPELINE_ROOT=gs://my-bucket/tfopt,TFOPT_RUN_SERVICE_ACCOUNT=tfopt-runner@my-project.iam.gserviceaccount.com
"""

from __future__ import annotations

import os
import re

from google.cloud import aiplatform

DATA_SUFFIXES = (".csv", ".npz", ".tfrecord", ".tfrecords")  # other files start no run


def start_run(bucket: str, name: str, env=os.environ, credentials=None) -> aiplatform.PipelineJob:
    """Submit one run of the template in ``env["TFOPT_TEMPLATE"]`` on ``gs://bucket/name``."""
    template = env["TFOPT_TEMPLATE"]  # https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG
    location, project = re.match(r"^https://([\w-]+)-kfp\.pkg\.dev/([^/]+)/", template).groups()
    stem = re.sub(r"[^a-z0-9-]+", "-", name.rsplit("/", 1)[-1].lower()).strip("-")[:40]
    job = aiplatform.PipelineJob(
        display_name=f"tfopt-{stem}",
        template_path=template,
        pipeline_root=env["TFOPT_PIPELINE_ROOT"],
        parameter_values={"source": f"gs://{bucket}/{name}"},
        project=project,
        location=location,
        credentials=credentials,
    )
    job.submit(service_account=env.get("TFOPT_RUN_SERVICE_ACCOUNT") or None)
    return job


def on_upload(cloud_event) -> None:
    """The function's entry point: a CloudEvent whose data names the bucket and the object."""
    data = cloud_event.data
    if data["name"].lower().endswith(DATA_SUFFIXES):
        start_run(data["bucket"], data["name"])
