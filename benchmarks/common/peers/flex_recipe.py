"""Build TensorFlow's own on-device-training recipe for the head and convert it with Flex.

    python flex_recipe.py PLAN.json     # in the Flex venv: TF 2.18.1, tf-keras, TF_USE_LEGACY_KERAS=1

The recipe (tensorflow.org/lite/examples/on_device_training/overview): a tf.Module holding a
Keras model with train/infer/save/restore tf.functions; save/restore call tf.raw_ops.Save and
tf.raw_ops.Restore on a checkpoint path, which the converter can only keep as Select TF ops
(FlexSave, FlexRestore); GradientTape over a dynamic batch adds tf.BroadcastGradientArgs
(Flex too). Same head as ours: Dense(features -> classes), softmax cross-entropy, SGD or
Adam at the same learning rate. As in the recipe, labels are one-hot float32 and `save`
writes the model's weights only (not the optimizer's slots).
Plan: {"features", "classes", "optimizer", "learning_rate", "output"}; prints
{"runtime", "size_bytes", "flex_ops"}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from timing import emit  # noqa: E402


class RecipeModel(tf.Module):
    def __init__(self, features: int, classes: int, optimizer: str, learning_rate: float):
        super().__init__()
        self.model = tf.keras.Sequential([tf.keras.layers.Dense(classes, input_shape=(features,), name="dense")])
        keras_optimizer = (tf.keras.optimizers.SGD(learning_rate) if optimizer == "sgd"
                           else tf.keras.optimizers.Adam(learning_rate))
        self.model.compile(optimizer=keras_optimizer,
                           loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))
        # Create the optimizer's slots now: a tf.function may not create variables on retrace.
        keras_optimizer.build(self.model.trainable_variables)
        spec_bottleneck = tf.TensorSpec([None, features], tf.float32)
        self.train = tf.function(self._train, input_signature=[spec_bottleneck, tf.TensorSpec([None, classes], tf.float32)])
        self.infer = tf.function(self._infer, input_signature=[spec_bottleneck])
        path_spec = tf.TensorSpec([], tf.string)
        self.save = tf.function(self._save, input_signature=[path_spec])
        self.restore = tf.function(self._restore, input_signature=[path_spec])

    def _train(self, bottleneck, label):
        with tf.GradientTape() as tape:
            loss = self.model.loss(label, self.model(bottleneck))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.model.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return {"loss": loss}

    def _infer(self, bottleneck):
        return {"probabilities": tf.nn.softmax(self.model(bottleneck))}

    def _save(self, checkpoint_path):
        names = [weight.name for weight in self.model.weights]
        tf.raw_ops.Save(filename=checkpoint_path, tensor_names=names,
                        data=[weight.read_value() for weight in self.model.weights], name="save")
        return {"checkpoint_path": checkpoint_path}

    def _restore(self, checkpoint_path):
        restored = {}
        for weight in self.model.weights:
            value = tf.raw_ops.Restore(file_pattern=checkpoint_path, tensor_name=weight.name,
                                       dt=weight.dtype, name="restore")
            weight.assign(value)
            restored[weight.name] = value
        return restored


def main() -> None:
    plan = json.load(open(sys.argv[1]))
    module = RecipeModel(plan["features"], plan["classes"], plan["optimizer"], plan["learning_rate"])
    with tempfile.TemporaryDirectory() as saved_model:
        tf.saved_model.save(module, saved_model, signatures={
            "train": module.train.get_concrete_function(), "infer": module.infer.get_concrete_function(),
            "save": module.save.get_concrete_function(), "restore": module.restore.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.experimental_enable_resource_variables = True
        model_bytes = converter.convert()
    with open(plan["output"], "wb") as handle:
        handle.write(model_bytes)
    flex_ops = sorted({name.decode() for name in _custom_codes(model_bytes)})
    emit({"runtime": f"tensorflow {tf.__version__}", "size_bytes": len(model_bytes), "flex_ops": flex_ops})


def _custom_codes(model_bytes: bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index).CustomCode()
        if code:
            yield code


if __name__ == "__main__":
    main()
