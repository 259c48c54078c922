"""Exceptions raised by tfopt for bad input, with messages meant for people."""


class TfoptError(Exception):
    """Base class of every error tfopt raises on purpose."""


class ConfigError(TfoptError, ValueError):
    """A configuration value is outside what is allowed."""


class DataError(TfoptError, ValueError):
    """Input data is missing, malformed or inconsistent."""


class ModelError(TfoptError, ValueError):
    """A model cannot be loaded or does not fit what the step needs."""


class TrainingError(TfoptError, RuntimeError):
    """Training went wrong in a way a re-run with the same settings would repeat."""


class CloudError(TfoptError):
    """A remote API (Vertex AI, Kubeflow Pipelines) failed or cannot be reached."""
