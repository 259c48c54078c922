"""Launch distributed training on a cluster: a Kubeflow Trainer v2 TrainJob, a bare
JobSet, a legacy Kubeflow TFJob, or a Vertex AI custom job.

Every launcher validates its request first (:mod:`tfopt.launch.validate`),
so bad input fails before anything is submitted. The replicas run
:mod:`tfopt.launch.worker`, which calls :func:`tfopt.training.train.train_model` with
the ``TF_CONFIG`` the operator (or Vertex AI) sets, or that it derives from the
JobSet environment (:mod:`tfopt.launch.tf_config`).
"""
