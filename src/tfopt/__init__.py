"""tfopt: train, compress, validate and deploy TensorFlow models with Kubeflow Pipelines.

Importing the package is cheap (no TensorFlow); modules that need TensorFlow
import it through :mod:`tfopt._keras`.
"""

__version__ = "0.1.0"
