"""A CIFAR-style ResNet (He et al. 2016, section 4.2) as a user's module file: 3 stages of
``blocks`` basic residual blocks (16, 32, 64 filters), a projection shortcut where a stage
halves the map, global pooling and a softmax head. ``blocks=3`` is ResNet-20 (0.27 M
parameters): a residual family small enough to train to early stopping on 2 cores, where
ResNet50 at 32x32 is not (issue 31's benchmark says which ResNet it used)."""

import tf_keras as keras


def _block(x, filters: int, stride: int, name: str):
    shortcut = x
    h = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_c1")(
        x
    )
    h = keras.layers.ReLU(name=f"{name}_r1")(keras.layers.BatchNormalization(name=f"{name}_b1")(h))
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_c2")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_b2")(h)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_p")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_pb")(shortcut)
    return keras.layers.ReLU(name=f"{name}_out")(
        keras.layers.Add(name=f"{name}_add")([h, shortcut])
    )


def build_model(hparams, input_shape, num_classes):
    blocks = int(hparams.get("blocks", 3))
    inputs = keras.Input(input_shape, name="x")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.ReLU(name="stem_r")(keras.layers.BatchNormalization(name="stem_b")(x))
    for stage, filters in enumerate((16, 32, 64)):
        for b in range(blocks):
            x = _block(x, filters, 2 if stage and not b else 1, f"s{stage}b{b}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(
        inputs, keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    )
