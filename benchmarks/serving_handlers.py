"""Latency the local TF Serving-API server adds per request, in process, optionally A/B.

Times batch-1 Predict on the digits MLP three ways, interleaved call by call so
machine noise hits all alike: the SavedModel signature called directly
(in-process baseline), the gRPC handler (``PredictRequest`` proto in, response
out) and the REST handler (JSON body in, JSON out), transports excluded. With
``--baseline FILE`` (an older ``server.py``, e.g. from git) the handlers of that
server are timed beside the current ones and the p50 ratio is printed.

    git show 97b9f70:src/tfopt/deploy/serving/server.py > /tmp/server_before.py
    .venv/bin/python benchmarks/serving_handlers.py --baseline /tmp/server_before.py [--calls N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time

import numpy as np

from tfopt._keras import tf
from tfopt.deploy.serving import repository
from tfopt.deploy.serving import server as current
from tfopt.training import models

# isort: off
from tensorflow_serving.apis import predict_pb2
# isort: on


def _module(path: str):
    spec = importlib.util.spec_from_file_location("baseline_server", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baseline_server"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000, help="timed calls per variant")
    ap.add_argument("--baseline", help="an older server.py to time beside the current one")
    args = ap.parse_args(argv)
    mods = {"current": current}
    if args.baseline:
        mods["baseline"] = _module(args.baseline)
    with tempfile.TemporaryDirectory() as tmp:
        m = models.build_model(models.ModelConfig(arch="mlp", width=32, depth=2), (8, 8, 1), 10)
        src = models.save_model(m, f"{tmp}/m")
        repository.push_model(src, f"{tmp}/repo", "digits")
        x = np.random.default_rng(0).normal(size=(1, 8, 8, 1)).astype(np.float32)
        body = json.dumps({"instances": x.tolist()}).encode()
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "digits"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
        fn = tf.saved_model.load(src).signatures["serving_default"]
        servers = {}
        for name, mod in mods.items():
            servers[name] = mod.ModelServer(
                f"{tmp}/repo", "digits", grpc_port=-1, rest_port=-1, poll_seconds=600
            )
            servers[name].poll_once()
        variants = {"in-process call": lambda s: fn(x=tf.constant(x))["probabilities"].numpy()}
        variants["gRPC handler"] = lambda s: s.grpc_predict(req)
        variants["REST handler"] = lambda s: s.rest("POST", "/v1/models/digits:predict", body)
        p50 = {}
        for vname, call in variants.items():
            lat: dict[str, list[float]] = {k: [] for k in servers}
            for s in servers.values():
                for _ in range(50):
                    call(s)
            order = list(servers)
            for i in range(args.calls):
                for k in order if i % 2 else order[::-1]:
                    t = time.perf_counter()
                    call(servers[k])
                    lat[k].append(time.perf_counter() - t)
            for k, v in lat.items():
                p50[(vname, k)] = float(np.percentile(v, 50)) * 1e6
    print("| path | " + " | ".join(f"{k} p50 us" for k in servers) + " |")
    print("|---|" + "---:|" * len(servers))
    for vname in variants:
        print(f"| {vname} | " + " | ".join(f"{p50[(vname, k)]:.0f}" for k in servers) + " |")
    for k in servers:
        base = p50[("in-process call", k)]
        added = ", ".join(f"{v} {p50[(v, k)] - base:.0f} us" for v in variants if v[0] != "i")
        print(f"{k}: added over the in-process call: {added}")
    if "baseline" in servers:
        for v in list(variants)[1:]:
            print(f"{v}: current / baseline p50 = {p50[(v, 'current')] / p50[(v, 'baseline')]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
