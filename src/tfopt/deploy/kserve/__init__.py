"""Deploy to KServe: an InferenceService on the TF Serving runtime, rolled out as a canary."""
