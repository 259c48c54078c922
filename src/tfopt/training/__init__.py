"""Training stage: model builders, training with tf.distribute, hyperparameter search, callbacks,
TensorBoard folders.
"""
