"""The proof, on the final bytes, that the compiled `load` computes what the user's own file
computes at the cut, call after call.

Both models run in LiteRT from fresh interpreters on the same sequence of CALLS inputs (a base
that keeps state between calls is compared over a stream, not one call) and are compared bit
for bit under the same kernel set, builtin kernels and XNNPACK (bit-identity holds only under
the same kernels: ../shared/NOTES-tflite.md):
- builtin kernels: the original's bytes run unchanged, the cut made readable by LiteRT's
  `experimental_preserve_all_tensors` (which applies no default delegate);
- XNNPACK: the original's bytes unchanged when the cut is one of its outputs, else a copy
  whose entry subgraph also outputs the cut tensor (ops, tensors and buffers untouched).
Our adapter (DEQUANTIZE and RESHAPE / MEAN / REDUCE_MAX after the cut, passes/cut.append_adapter)
is applied to the original's values by the same ops, in a model of their own under the same
kernels, so what is compared are bit patterns, not values within a tolerance. Likewise, when the
model scales the app's input range to the base's (--input_range, passes/model_input.py), the
app-range inputs go through the same MUL/ADD/QUANTIZE ops in a model of their own, and what
they give is what the original is fed.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflite_transfer.compiler.errors import VerificationError
from tflite_transfer.compiler.flatbuffer import graph, model_io
from tflite_transfer.compiler.flatbuffer.model_io import TensorType
from tflite_transfer.compiler.passes import cut as cut_pass
from tflite_transfer.compiler.passes import model_input
from tflite_transfer.runtime import contract
from tflite_transfer.runtime.interpreter import new_interpreter

CALLS = 4
_CUT_OUTPUT = "tflite_transfer_cut"
_NUMPY_TYPES = {TensorType.UINT8: np.uint8, TensorType.INT8: np.int8, TensorType.INT16: np.int16,
                TensorType.INT32: np.int32, TensorType.INT64: np.int64, TensorType.FLOAT32: np.float32,
                TensorType.FLOAT16: np.float16}
KERNEL_SETS = ((True, "XNNPACK"), (False, "builtin kernels"))   # XNNPACK: what runtimes use by default


@dataclasses.dataclass(frozen=True)
class ReproductionReport:
    calls: int
    batch: int
    cut: str                       # the original's tensor at the cut
    copied_for_xnnpack: bool       # XNNPACK ran a copy that also outputs the cut
    stateful: bool
    interpreter: str

    def describe(self) -> str:
        xnnpack = "a copy that also outputs the cut" if self.copied_for_xnnpack else "its bytes as given"
        state = ", its state carried from call to call" if self.stateful else ""
        return (f"`load` equals the original file's '{self.cut}' bit for bit over {self.calls} calls at "
                f"batch {self.batch}{state}, in {self.interpreter} with builtin kernels (the original's "
                f"bytes as given) and XNNPACK ({xnnpack})")


def _inputs(tensor, batch: int, image_range, seed: int = 11) -> list[np.ndarray]:
    dtype = _NUMPY_TYPES.get(tensor.type)
    if dtype is None:
        raise VerificationError(f"the base's input is {model_io.tensor_type_name(tensor.type)}; the "
                                "reproduction check cannot make inputs for it")
    shape = (batch, *[max(int(d), 1) for d in model_io.tensor_shape(tensor)[1:]])
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return [rng.integers(info.min, int(info.max) + 1, shape).astype(dtype) for _ in range(CALLS)]
    low, high = image_range or (-1.0, 1.0)
    return [rng.uniform(low, high, shape).astype(dtype) for _ in range(CALLS)]


def _entry_signature(model, entry: int):
    return next((s for s in model.signatureDefs or [] if s.subgraphIndex == entry), None)


def _with_cut_output(original, entry: int, cut: int) -> bytes:
    """A copy of the original whose entry subgraph (and its signature) also outputs the cut."""
    model = copy.deepcopy(original)
    subgraph = model.subgraphs[entry]
    subgraph.outputs = [*[int(t) for t in subgraph.outputs], cut]
    signature = _entry_signature(model, entry)
    if signature is not None:
        signature.outputs = [*(signature.outputs or []), graph.tensor_map(_CUT_OUTPUT, cut)]
    return model_io.write_model_bytes(model)


def _run_original(model_bytes: bytes, model, entry: int, cut: int, inputs, xnnpack: bool,
                  preserve: bool) -> list[np.ndarray]:
    interpreter, _ = new_interpreter(model_bytes, xnnpack=xnnpack, preserve_all_tensors=preserve)
    signature = _entry_signature(model, entry)
    results = []
    if signature is not None:
        runner = interpreter.get_signature_runner(signature.signatureKey.decode())
        input_name = signature.inputs[0].name.decode()
        output = next((m.name.decode() for m in signature.outputs or [] if m.tensorIndex == cut), None)
        for value in inputs:
            outputs = runner(**{input_name: value})
            results.append(np.array(outputs[output] if output else interpreter.get_tensor(cut, entry)))
        return results
    # No signatures: the entry is subgraph 0, run by invoke().
    image = int(model.subgraphs[entry].inputs[0])
    interpreter.resize_tensor_input(image, list(inputs[0].shape))
    interpreter.allocate_tensors()
    for value in inputs:
        interpreter.set_tensor(image, value)
        interpreter.invoke()
        results.append(np.array(interpreter.get_tensor(cut)))
    return results


def _adapter(original, entry: int, cut: int, batch: int, source: str, kind: str | None) -> bytes | None:
    """Our DEQUANTIZE and adapter alone, as a model taking the cut tensor (None: no adapter)."""
    model = graph.new_model("tflite-transfer: the cut adapter")
    tensor = copy.deepcopy(original.subgraphs[entry].tensors[cut])
    tensor.buffer, tensor.name = 0, b"cut"
    tensor.shape = np.array([batch, *[max(d, 1) for d in model_io.tensor_shape(tensor)[1:]]], np.int32)
    tensor.shapeSignature = None
    subgraph = model_io.schema.SubGraphT()
    subgraph.tensors, subgraph.operators, subgraph.inputs, subgraph.outputs = [tensor], [], [0], [0]
    model.subgraphs = [subgraph]
    cut_pass.append_adapter(graph.GraphEditor(model), subgraph, source, kind)
    if not subgraph.operators:
        return None
    model.signatureDefs = [graph.signature_def("adapt", 0, {"cut": 0}, {contract.BOTTLENECK: int(subgraph.outputs[0])})]
    return model_io.write_model_bytes(model)


def _scaler(template, batch: int, plan) -> bytes:
    """The model's input scaling alone (model_input.add_scaling's ops), app values -> base values."""
    model = graph.new_model("tflite-transfer: the input scaling")
    subgraph = model_io.schema.SubGraphT()
    subgraph.tensors, subgraph.operators = [model_input.input_tensor(template, "app", plan)], []
    subgraph.tensors[0].shape = np.array([batch, *plan.spec.shape], np.int32)
    subgraph.tensors[0].shapeSignature = None
    model.subgraphs = [subgraph]
    scaled, _ = model_input.add_scaling(graph.GraphEditor(model), subgraph, 0, plan)
    subgraph.tensors[scaled].shape = np.array([batch, *plan.spec.shape], np.int32)
    subgraph.tensors[scaled].shapeSignature = None
    subgraph.inputs, subgraph.outputs = [0], [scaled]
    model.signatureDefs = [graph.signature_def("scale", 0, {"app": 0}, {"base": scaled})]
    return model_io.write_model_bytes(model)


def _differs(found: np.ndarray, expected: np.ndarray) -> bool:
    return (found.shape != expected.shape or found.dtype != expected.dtype
            or np.ascontiguousarray(found).tobytes() != np.ascontiguousarray(expected).tobytes())


def check_load_reproduces_base(model_bytes: bytes, base_bytes: bytes, base_model, entry: int, cut: int,
                               image_range=None, stateful: bool = False, source: str = "base",
                               names: contract.TensorNames | None = None, adapter: str | None = None,
                               input_plan=None) -> ReproductionReport:
    """Raises VerificationError naming the call and kernel set where the compiled `load`
    differs from the original at the cut; returns what was proven."""
    subgraph = base_model.subgraphs[entry]
    image = subgraph.tensors[subgraph.inputs[0]]
    first = model_io.tensor_shape(image)[0] if model_io.tensor_shape(image) else 1
    batch = first if first > 0 else 1
    names = names or contract.TensorNames()
    scales = input_plan is not None and input_plan.adds_ops
    if scales:  # the app's values, in the range it feeds (float32)
        app_inputs = [np.random.default_rng(11 + call).uniform(*input_plan.spec.range, (batch, *input_plan.spec.shape))
                      .astype(np.float32) for call in range(CALLS)]
        scaler = _scaler(image, batch, input_plan)
    else:
        app_inputs = inputs = _inputs(image, batch, image_range)
    is_output = cut in [int(t) for t in subgraph.outputs]
    cut_name = model_io.tensor_name(subgraph.tensors[cut])
    copied = None if is_output else _with_cut_output(base_model, entry, cut)
    adapter = _adapter(base_model, entry, cut, batch, source, adapter)
    interpreter_name = ""
    for xnnpack, kernels in KERNEL_SETS:
        original_bytes = base_bytes if (is_output or not xnnpack) else copied
        original_model = base_model if original_bytes is base_bytes else model_io.read_model_bytes(copied)
        if scales:
            scale = new_interpreter(scaler, xnnpack=xnnpack)[0].get_signature_runner("scale")
            inputs = [np.array(scale(app=value)["base"]) for value in app_inputs]
        try:
            expected = _run_original(original_bytes, original_model, entry, cut, inputs, xnnpack,
                                     preserve=not is_output and not xnnpack)
        except (RuntimeError, ValueError) as error:
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            raise VerificationError(f"{source} itself fails in the interpreter ({kernels}), so the "
                                    f"compiled model cannot be checked against it: {reason[:300]}") from None
        if adapter is not None:
            adapt = new_interpreter(adapter, xnnpack=xnnpack)[0].get_signature_runner("adapt")
            expected = [np.array(adapt(cut=value)[contract.BOTTLENECK]) for value in expected]
        compiled, interpreter_name = new_interpreter(model_bytes, xnnpack=xnnpack)
        load = compiled.get_signature_runner(contract.LOAD)
        for call, (value, wanted) in enumerate(zip(app_inputs, expected)):
            try:
                found = np.array(load(**{names.input: value})[names.bottleneck])
            except (RuntimeError, ValueError) as error:
                reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
                raise VerificationError(f"the compiled model's `load` fails on call {call + 1} of {CALLS} "
                                        f"({kernels}): {reason[:300]}") from None
            if _differs(found, wanted):
                raise VerificationError(_difference(found, wanted, call, kernels, cut_name, source))
    return ReproductionReport(CALLS, batch, cut_name, copied is not None, stateful, interpreter_name)


def _difference(found, wanted, call: int, kernels: str, cut_name: str, source: str) -> str:
    where = (f"the compiled model's `load` does not reproduce {source}'s tensor '{cut_name}' at the cut: "
             f"call {call + 1} of {CALLS} ({kernels})")
    if found.shape != wanted.shape:
        return f"{where} gives shape {list(found.shape)}, the original {list(wanted.shape)}"
    difference = np.abs(found.astype(np.float64) - wanted.astype(np.float64))
    span = f"[{np.min(wanted):.3g}, {np.max(wanted):.3g}]" if wanted.size else "[]"
    lost = "; the earlier calls agree, so state carried between calls is lost" if call else ""
    return f"{where} differs by up to {np.nanmax(difference):.3g} (the original's values span {span}){lost}"
