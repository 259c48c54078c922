"""Deploy stage: TensorFlow Serving (repository, server, validation, Kubernetes) and Vertex AI."""
