"""Resume training exactly where a killed run's ``BackupAndRestore`` backup left it.

Keras restores weights, optimizer state and the epoch counter, but not the input
pipeline: a seeded ``shuffle(reshuffle_each_iteration=True)`` draws each epoch's
order from a seed generator that starts afresh in the new process, so a resumed
run would see epoch 0's order again. Starting (one element) and dropping one
iterator per finished epoch advances that generator to the order the
uninterrupted run would use next. And the training pipeline declares its number
of batches: with an unknown length (interleave over shards) Keras finds the end
of the first epoch of each ``fit`` by running one step too many, which advances
the optimizer's step counter once more in a resumed run than in an uninterrupted
one (Adam's bias correction then differs). With deterministic ops and no dropout
the resumed run ends with the same weights (``tests/integration/test_reliability_crash_steps.py``).
Dropout masks still differ: Keras draws them from stateful random ops whose
state lives in the process, not in the checkpoint.
"""

from __future__ import annotations

import logging
import os

from tfopt._keras import tf

log = logging.getLogger(__name__)

# Where BackupAndRestore keeps the checkpoint every worker restores from, and the
# variable holding the last finished epoch (tf_keras WorkerTrainingState).
_CHIEF_DIR = "chief"
_SAVED_EPOCH = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def completed_epochs(backup_dir: str) -> int:
    """Epochs the backup in ``backup_dir`` has finished (0 when there is none)."""
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, _CHIEF_DIR))
    if checkpoint is None:
        return 0
    try:
        return int(tf.train.load_variable(checkpoint, _SAVED_EPOCH)) + 1
    except (tf.errors.NotFoundError, ValueError) as exc:  # another Keras' layout
        log.warning(
            "%s: cannot read the finished epoch (%s); the resumed run's input "
            "order will differ from an uninterrupted run's",
            checkpoint,
            exc,
        )
        return 0


def skip_epoch_orders(dataset, epochs: int) -> None:
    """Advance ``dataset``'s per-epoch shuffle order by ``epochs`` epochs.

    One element is read from each dropped iterator: a shuffle nested in an
    interleave (the uncached pipeline shuffles its shard list) draws its seeds
    only when it first produces; merely making the iterator advanced the record
    shuffle but not the shard order.
    """
    for _ in range(epochs):
        next(iter(dataset), None)


def with_known_batches(dataset, examples: int, batch_size: int):
    """``dataset`` (``examples`` in batches of ``batch_size``, last one partial) with its
    number of batches declared, as a single worker sees it."""
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
