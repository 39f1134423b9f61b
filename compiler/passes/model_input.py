"""The model's input: what the signatures take (the base's input, of any rank and dtype), the
value range the app feeds, and the ops that scale it to what the base expects.

With `--input_range=LO,HI` the app feeds float32 values in [LO, HI]; in front of the base call
of `load`, `infer` and `train_images` an affine map (MUL, ADD) takes them to the range the base
expects, then, for a quantized (int8/uint8) base input, a QUANTIZE with scale 1 and zero point
0 rounds them to the integer the base takes (its range is then in raw integer units, e.g.
0..255 for a uint8 image). The base's own tensors and buffers stay untouched.

The range the base expects: `--base_input_range` when stated; else what the compiler knows
(its own Keras/SavedModel conversions and the embedded base take 0..255 pixels; an integer
input takes its dtype's range; a hosted base's TFLite Metadata NormalizationOptions). Without
it, `--input_range` is refused: a scale guessed wrong would train on garbage silently.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflite_transfer.compiler.errors import InvalidInputError
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import BuiltinOperator, TensorType
from tflite_transfer.runtime import contract

_INTEGER_TYPES = {TensorType.UINT8: np.uint8, TensorType.INT8: np.int8}


@dataclasses.dataclass(frozen=True)
class InputPlan:
    spec: contract.InputSpec         # what the signatures take, as the metadata records it
    scale: float = 1.0               # base value = app value * scale + offset
    offset: float = 0.0
    quantize_to: int | None = None   # the base's integer TensorType, when the app feeds floats to it

    @property
    def adds_ops(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0 or self.quantize_to is not None


def plan_input(base_input: model_io.schema.TensorT, known_range: tuple[float, float] | None,
               stated_range: tuple[float, float] | None, app_range: tuple[float, float] | None,
               source: str) -> InputPlan:
    """The input of the compiled model, from the base's input tensor and the ranges: the one the
    compiler knows, the one the user stated (--base_input_range wins) and the app's."""
    dims = model_io.tensor_shape(base_input)
    shape = tuple(dims[1:])
    dtype = model_io.tensor_type_name(base_input.type).lower()
    if not shape or min(shape) < 1:
        raise InvalidInputError(f"{source}: the base's input has shape {dims}; only its batch (the "
                                "first dimension) may be dynamic")
    integer = _INTEGER_TYPES.get(base_input.type)
    if integer is None and base_input.type != TensorType.FLOAT32:
        raise InvalidInputError(f"{source}: the base's input is {dtype} {dims}; supported: float32, int8, uint8")
    if stated_range is not None:
        base_range = stated_range
    elif integer is not None:
        info = np.iinfo(integer)
        base_range = (float(info.min), float(info.max))
    else:
        base_range = known_range
    kind = contract.input_kind(shape)
    if app_range is None:
        return InputPlan(contract.InputSpec(kind, dtype, shape, base_range, base_range))
    if base_range is None:
        raise InvalidInputError(
            f"--input_range={app_range[0]:g},{app_range[1]:g}: the compiler does not know which values "
            f"the base {source} expects ({dtype} input, no normalization metadata); state them with "
            "--base_input_range=LO,HI (e.g. 0,255 or -1,1)")
    scale = (base_range[1] - base_range[0]) / (app_range[1] - app_range[0])
    offset = base_range[0] - app_range[0] * scale
    spec = contract.InputSpec(kind, "float32", shape, app_range, base_range)
    return InputPlan(spec, float(np.float32(scale)), float(np.float32(offset)),
                     base_input.type if integer is not None else None)


def input_tensor(template: model_io.schema.TensorT, name: str, plan: InputPlan) -> model_io.schema.TensorT:
    """The signature's input tensor: the base input's type, quantization and per-sample shape
    (float32, unquantized, when the app feeds a range), batch dynamic."""
    tensor = copy.deepcopy(template)
    tensor.name, tensor.buffer = name.encode(), 0
    if plan.quantize_to is not None:
        tensor.type, tensor.quantization = TensorType.FLOAT32, None
    dims = model_io.tensor_shape(template)
    tensor.shape = np.array([1] + [max(d, 1) for d in dims[1:]], np.int32)
    tensor.shapeSignature = np.array([-1] + dims[1:], np.int32)
    return tensor


def add_scaling(editor: graph.GraphEditor, subgraph, app_input: int, plan: InputPlan,
                position: int = 0) -> tuple[int, int]:
    """Inserts MUL/ADD (and QUANTIZE) from `app_input` to what the base takes at `position`;
    returns (the tensor to pass to the base, the position after the ops inserted)."""
    dims = [-1] + [int(d) for d in plan.spec.shape]
    current, added = app_input, position
    for code, value, what in ((BuiltinOperator.MUL, plan.scale, "scale"), (BuiltinOperator.ADD, plan.offset, "offset")):
        if value == (1.0 if what == "scale" else 0.0):
            continue
        constant = editor.tensor(subgraph, f"input/{what}", TensorType.FLOAT32, [],
                                 data=np.float32(value).tobytes())
        result = editor.tensor(subgraph, f"input/{what}d", TensorType.FLOAT32, dims)
        options = "MulOptions" if code == BuiltinOperator.MUL else "AddOptions"
        editor.op(subgraph, code, 1, [current, constant], [result], graph.options(options), position=added)
        current, added = result, added + 1
    if plan.quantize_to is not None:
        quantized = editor.tensor(subgraph, "input/quantized", plan.quantize_to, dims)
        subgraph.tensors[quantized].quantization = model_io.schema.QuantizationParametersT()
        subgraph.tensors[quantized].quantization.scale = np.array([1.0], np.float32)
        subgraph.tensors[quantized].quantization.zeroPoint = np.array([0], np.int64)
        editor.op(subgraph, BuiltinOperator.QUANTIZE, 1, [current], [quantized], position=added)
        current, added = quantized, added + 1
    return current, added
