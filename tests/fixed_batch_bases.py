"""Bases with a fixed batch of 1, built here like the published ones (see
../shared/NOTES-tflite.md, "Real-world hosted bases"): Keras models converted with an input of
[1, 16, 12, 3], full int8 with uint8 input/output, a features output (the bottleneck) and a
probabilities output, and the batch-1 constants such files carry.

Layouts (`fixed_batch_base(layout)` returns (tflite bytes, bottleneck name for --base_output)):
  reshape    pool [1,1,1,8] -> RESHAPE to the constant [1, 8] -> features   (EfficientNet-Lite,
             model-maker, TF-Hub feature vectors); SignatureDef serving_default
  tf1        the same file as a TF1-era converter wrote it: no SignatureDefs, the target also in
             ReshapeOptions.new_shape, no shape_signature anywhere
  squeeze    the RESHAPE replaced by SQUEEZE(squeeze_dims=[1, 2]) (TF1 slim's `tf.squeeze`)
  slice      `reshape` with a STRIDED_SLICE [0:1] of the batch before the RESHAPE (a TF1 `x[0:1]`)
  float      `reshape` unquantized (float32 in/out)
  se         a squeeze-excitation block: the converter folds its RESHAPE [1, 1, 1, 8] into a MUL
             that broadcasts [1, 8] against [1, 14, 10, 8], which only lines up at batch 1
  broadcast  a BROADCAST_TO of the pooled features to the constant [1, 2, 2, 8]
  mixing     NOT fixed: a dynamic-batch float base that subtracts the batch mean from its
             features (each sample's output depends on the others)
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("reshape", "tf1", "squeeze", "slice", "float", "se", "broadcast", "mixing")
IMAGE_SHAPE = (16, 12, 3)
FEATURES = 8


def _keras_model(layout: str):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    image = keras.Input(IMAGE_SHAPE, batch_size=None if layout == "mixing" else 1)
    x = keras.layers.Conv2D(FEATURES, 3, activation="relu")(image)        # [1, 14, 10, 8]
    if layout == "se":
        scale = keras.layers.AveragePooling2D((14, 10))(x)
        scale = keras.layers.Dense(FEATURES, activation="sigmoid")(keras.layers.Reshape((FEATURES,))(scale))
        x = keras.layers.Multiply()([x, keras.layers.Reshape((1, 1, FEATURES))(scale)])
    x = keras.layers.AveragePooling2D((14, 10))(x)                           # [1, 1, 1, 8]
    if layout == "broadcast":
        x = keras.layers.Lambda(lambda t: tf.broadcast_to(t, [1, 2, 2, FEATURES]))(x)
        x = keras.layers.Conv2D(FEATURES, 2)(x)
    features = keras.layers.Reshape((FEATURES,))(x)                          # [1, 8]
    if layout == "mixing":
        features = keras.layers.Lambda(lambda t: t - tf.reduce_mean(t, axis=0, keepdims=True))(features)
    probabilities = keras.layers.Softmax()(keras.layers.Dense(5)(features))
    return keras.Model(image, [features, probabilities])


def _convert(model, quantize: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(0)

        def calibration():
            for _ in range(16):
                yield [rng.random((1, *IMAGE_SHAPE), dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    return converter.convert()


def _features_tensor(model) -> int:
    """The subgraph tensor behind the signature output `output_0` (the features)."""
    signature = model.signatureDefs[0]
    return next(int(m.tensorIndex) for m in signature.outputs if m.name == b"output_0")


def _reshape_op(model):
    from tflite_transfer.compiler import model_io

    subgraph = model.subgraphs[0]
    return next(op for op in subgraph.operators
                if model_io.operator_name(model.operatorCodes[op.opcodeIndex]) == "RESHAPE")


def _as_tf1(model) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    reshape = _reshape_op(model)
    options = schema.ReshapeOptionsT()
    options.newShape = [1, FEATURES]
    reshape.builtinOptionsType, reshape.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
    model.signatureDefs = []
    for tensor in model.subgraphs[0].tensors:
        tensor.shapeSignature = None


def _as_squeeze(model) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    from tflite_transfer.compiler import model_io

    reshape = _reshape_op(model)
    model.operatorCodes.append(model_io.make_op_code(schema.BuiltinOperator.SQUEEZE, 1))
    options = schema.SqueezeOptionsT()
    options.squeezeDims = [1, 2]
    reshape.opcodeIndex = len(model.operatorCodes) - 1
    reshape.inputs = [int(reshape.inputs[0])]
    reshape.builtinOptionsType, reshape.builtinOptions = schema.BuiltinOptions.SqueezeOptions, options


def _with_batch_slice(model) -> None:
    """Puts STRIDED_SLICE(begin [0, 0, 0, 0], end [1, 1, 1, 8], strides 1) before the RESHAPE."""
    from tensorflow.lite.python import schema_py_generated as schema

    from tflite_transfer.compiler import model_io

    subgraph, reshape = model.subgraphs[0], _reshape_op(model)
    source = subgraph.tensors[reshape.inputs[0]]
    indices = []
    for name, values in (("begin", [0, 0, 0, 0]), ("end", [1, 1, 1, FEATURES]), ("strides", [1, 1, 1, 1])):
        tensor = schema.TensorT()
        tensor.name, tensor.type, tensor.shape = f"batch_slice/{name}".encode(), schema.TensorType.INT32, np.array([4], np.int32)
        model.buffers.append(model_io.make_buffer(np.array(values, np.int32).tobytes()))
        tensor.buffer = len(model.buffers) - 1
        subgraph.tensors.append(tensor)
        indices.append(len(subgraph.tensors) - 1)
    sliced = schema.TensorT()
    sliced.name, sliced.type, sliced.shape = b"batch_slice", source.type, np.array(source.shape, np.int32)
    sliced.quantization, sliced.buffer = source.quantization, 0
    subgraph.tensors.append(sliced)
    model.operatorCodes.append(model_io.make_op_code(schema.BuiltinOperator.STRIDED_SLICE, 4))
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = [int(reshape.inputs[0]), *indices], [len(subgraph.tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.StridedSliceOptions, schema.StridedSliceOptionsT()
    subgraph.operators.insert(subgraph.operators.index(reshape), op)
    reshape.inputs = [len(subgraph.tensors) - 1, *[int(i) for i in reshape.inputs[1:]]]


def fixed_batch_base(layout: str) -> tuple[bytes, str]:
    """(tflite bytes, name of the features tensor to cut at) for one of LAYOUTS."""
    from tflite_transfer.compiler import model_io

    if layout not in LAYOUTS:
        raise ValueError(layout)
    data = _convert(_keras_model("reshape" if layout in ("tf1", "squeeze", "slice", "float") else layout),
                    quantize=layout not in ("float", "mixing"))
    model = model_io.read_model_bytes(data)
    features = model_io.tensor_name(model.subgraphs[0].tensors[_features_tensor(model)])
    if layout == "tf1":
        _as_tf1(model)
    elif layout == "squeeze":
        _as_squeeze(model)
    elif layout == "slice":
        _with_batch_slice(model)
    else:
        return data, features
    return model_io.write_model_bytes(model), features
