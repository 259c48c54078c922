"""Tiny SavedModels in the shapes of TF Serving's own test models, built locally.

``half_plus_two`` mirrors ``tensorflow_serving/servables/tensorflow/testdata/
saved_model_half_plus_two.py``: a TF1 graph, y = a * x + b with a = 0.5, b = 2,
a Predict signature on a float ``x`` of shape [-1, 1], and Classify / Regress
signatures on serialized ``tf.Example`` (feature ``x``). A few extra Predict
signatures cover strings (``*_bytes`` aliases), bools, ints and several outputs.
``half_plus_two_tf2`` is the same model written by ``tf.saved_model.save``
(it carries ``__saved_model_init_op``, as every TF2 export does).
"""

from __future__ import annotations

import os

from tfopt._keras import tf

A, B = 0.5, 2.0


def half_plus_two(path: str, b: float = B) -> str:
    """Write the TF1 half_plus_two SavedModel (with ``b`` as its offset) to ``path``."""
    v1 = tf.compat.v1
    sig = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        a_var = v1.Variable(A, name="a")
        b_var = v1.Variable(b, name="b")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        feats = tf.io.parse_example(
            serialized,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        y_ex = tf.add(a_var * feats["x"], b_var, name="y_ex")  # [n, 1]
        y3 = tf.add(a_var * feats["x2"], 3.0, name="y3")
        n = tf.shape(y_ex)[0]
        classes = tf.tile(tf.constant([["low", "high"]]), tf.stack([n, 1]))
        scores = tf.concat([y_ex, 2.0 * y_ex], axis=1)
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        y = tf.add(a_var * x, b_var, name="y")
        text = v1.placeholder(tf.string, [None], name="text_bytes")
        flag = v1.placeholder(tf.bool, [None], name="flag")
        count = v1.placeholder(tf.int64, [None], name="count")
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(path)
            builder.add_meta_graph_and_variables(
                sess,
                ["serve"],
                signature_def_map={
                    "serving_default": sig.predict_signature_def({"x": x}, {"y": y}),
                    "two_outputs": sig.predict_signature_def(
                        {"x": x}, {"y": y, "x_again": tf.identity(x)}
                    ),
                    "strings": sig.predict_signature_def(
                        {"text_bytes": text},
                        {"length": tf.strings.length(text), "echo_bytes": tf.identity(text)},
                    ),
                    "mask": sig.predict_signature_def(
                        {"flag": flag, "count": count},
                        {"masked": tf.where(flag, count, tf.zeros_like(count))},
                    ),
                    "classify_x_to_y": sig.classification_signature_def(
                        serialized, classes, scores
                    ),
                    "regress_x_to_y": sig.regression_signature_def(serialized, y_ex),
                    "regress_x2_to_y3": sig.regression_signature_def(serialized, y3),
                },
            )
            builder.save()
    return path


def half_plus_two_tf2(path: str) -> str:
    """The Predict half of half_plus_two, exported the TF2 way."""

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"y": A * x + B}

    m = HalfPlusTwo()
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    return path


def version_dir(base: str, name: str) -> str:
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, name)
