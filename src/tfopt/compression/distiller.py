"""The distillation loss and the Keras model that trains a student with it.

Loss per batch (Hinton et al.)::

    alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

tfopt models output probabilities; their logits are taken from the input of a
final softmax ``Activation`` when there is one, else as ``log(p)``
(``softmax(log p / T) == softmax(z / T)`` exactly). The teacher is frozen, and the
hard-label term applies only to examples with a label (a mask).
"""

from __future__ import annotations

from tfopt._keras import keras, tf
from tfopt.data import input_pipeline


def logits_model(model: keras.Model) -> keras.Model:
    """Return a model giving logits: the input of a final softmax, else ``log(p)``."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Activation) and getattr(act, "__name__", "") == "softmax":
        return keras.Model(model.inputs, last.input)
    p = model.outputs[0]
    return keras.Model(model.inputs, tf.math.log(tf.clip_by_value(p, 1e-12, 1.0)))


class Distiller(keras.Model):
    """Trains ``student`` against a frozen ``teacher`` on (x, label, mask) batches, or on
    (x, label, mask, teacher logits) batches when the teacher's outputs were taken once."""

    def __init__(
        self, student: keras.Model, teacher: keras.Model, temperature: float, alpha: float
    ):
        super().__init__()
        self.student = student
        self.student_logits = logits_model(student)
        self.teacher_logits = logits_model(teacher)
        self.teacher_logits.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, x, training=False):
        return self.student(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def test_step(self, batch):
        """The student alone on ``(x, label)`` batches: its cross-entropy and accuracy (the
        ``val_`` figures early stopping watches)."""
        x, labels = batch
        p = self.student(x, training=False)
        self.loss_tracker.update_state(keras.losses.sparse_categorical_crossentropy(labels, p))
        self.accuracy.update_state(labels, p)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy.result()}

    def distill_loss(self, teacher_logits, student_logits, labels, mask):
        t = self.temperature
        p_teacher = tf.nn.softmax(teacher_logits / t)
        log_p_student = tf.nn.log_softmax(student_logits / t)
        kl = tf.reduce_sum(p_teacher * (tf.math.log(p_teacher + 1e-12) - log_p_student), -1)
        ce = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
        hard = tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        return self.alpha * hard + (1.0 - self.alpha) * t * t * tf.reduce_mean(kl)

    def train_step(self, batch):
        x, labels, mask, *given = batch
        teacher_logits = given[0] if given else self.teacher_logits(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student_logits(x, training=True)
            loss = self.distill_loss(teacher_logits, student_logits, labels, mask)
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def early_stopping(info, patience: int):
    """(callbacks, validation batches) that stop a distillation once the student's
    validation accuracy has not improved for ``patience`` epochs, keeping its best epoch's
    weights; none when ``patience`` is 0 or there is no validation split."""
    if not patience or not info.counts.get("validation"):
        return [], None
    val = input_pipeline.make_dataset(
        info, "validation", input_pipeline.InputConfig(batch_size=256)
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
    )
    return [stop], val
