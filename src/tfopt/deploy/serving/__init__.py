"""Serving: TF Serving model repository, warmup, configs, a local server and clients."""
