"""Static signature batches: `--batch=IMAGES,TRAIN`.

By default a compiled model's signatures take any batch (a -1 first dimension). Some
runtimes need every signature shape static: LiteRT.js refuses a -1 dimension outright
("TensorBuffer ranked tensor type Float32[1,224,224,3] does not match expected ...
Float32[-1,224,224,3]") and returns wrong-sized outputs from dynamic `load`/`infer` at batch
> 1. This pass fixes the batch of the image signatures (`infer`, `load`, `train_images`) and
of `train`, and reports both; the pipeline records them in the metadata (`image_batch`, `train_batch`, see
`tflite_transfer.runtime.contract.ModelMetadata.fixed_batch`), from which the runtimes know to
run images in chunks of that batch and `train` on batches of exactly that size.

What changes: in every subgraph a fixed-batch signature runs (its own subgraph and whatever
its IF ops call: the base behind the IF), each tensor that is not a constant has its dynamic
(-1) dimension set to the batch, in `shape` and `shape_signature` alike (the head is built from
`TensorSpec([None, ...])`, the base's converter marks its batch dynamic). A tensor with two
dynamic dimensions (one is not the batch) keeps its shape signature whole: a base that computes
a size when it runs (an audio front end slicing its frames: SHAPE -> PACK -> SLICE, output
[-1, -1]) has such tensors, and TFLite sizes them when it runs, as in the base; setting the
-1s to the batch made its SLICE fail ("44032 != 1"). A signature input with any other dynamic
dimension is refused. Constants, ops and weights are not touched, so the arithmetic is the
dynamic model's: `train` at the fixed batch gives bit-identical results.

`static_batches` is the pipeline's entry: it first makes a fixed-batch-of-1 base run at any
batch where that is exact (compiler/passes/batch_agnostic.py); a base that cannot be gets
`image_batch = 1`, so no model ever advertises a batch its base cannot run.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from tflite_transfer.compiler.checks import audit
from tflite_transfer.compiler.passes import batch_agnostic
from tflite_transfer.compiler.flatbuffer import model_io
from tflite_transfer.compiler.errors import InvalidInputError, UnsupportedModelError
from tflite_transfer.compiler.options import BatchOptions, parse_batch_flag  # noqa: F401 (the flag, parsed before any work)
from tflite_transfer.runtime import contract

@dataclasses.dataclass(frozen=True)
class BatchReport:
    """What the compiled model's signatures take (None: any batch), and why."""
    image_batch: int | None
    train_batch: int | None
    note: str = ""                      # one line for the summary, e.g. why images run one by one
    tensors_fixed: int = 0              # tensors whose dynamic dimensions were set
    base_rewritten: bool = False        # the base was made batch-agnostic (compiler/passes/batch_agnostic.py)

    def describe(self) -> str:
        show = lambda b: "any" if b is None else f"fixed {b}"  # noqa: E731
        text = f"image signatures batch {show(self.image_batch)}, train batch {show(self.train_batch)}"
        return f"{text}; {self.note}" if self.note else text


def static_batches(model: model_io.ModelT, base_subgraph: int, kept_tensor_count: int,
                   options: BatchOptions, source: str = "base") -> tuple[model_io.ModelT, BatchReport]:
    """The batch pass of the pipeline: makes the base batch-agnostic where that is exact
    (compiler/passes/batch_agnostic.py), else fixes the image signatures at batch 1; then fixes the
    batches the user asked for. A base that runs at batch 1 only never yields a model that
    advertises any other image batch."""
    image_batch, note, rewritten = options.image_batch, "", False
    if image_batch != 1:  # at batch 1 the base runs as given: nothing to rewrite or prove
        candidate, agnostic = batch_agnostic.make_batch_agnostic(model, base_subgraph, kept_tensor_count)
        if agnostic.blocker is not None and image_batch is not None:
            train = "any" if options.train_batch is None else options.train_batch
            raise InvalidInputError(f"--batch={options.describe()}: {source} runs at batch 1 only "
                                    f"({agnostic.blocker}); use --batch=1,{train}")
        if agnostic.blocker is None:
            model, rewritten = candidate, bool(agnostic.rewrites or agnostic.opened_signatures)
        else:
            image_batch = 1
        note = agnostic.describe()
    fixed, report = fix_signature_batches(model, image_batch, options.train_batch, note)
    return fixed, dataclasses.replace(report, base_rewritten=rewritten)


def signature_batches(image_batch: int | None, train_batch: int | None) -> dict[str, int | None]:
    return {**{key: image_batch for key in contract.IMAGE_SIGNATURES}, contract.TRAIN: train_batch}


def fix_signature_batches(model: model_io.ModelT, image_batch: int | None, train_batch: int | None,
                          note: str = "") -> tuple[model_io.ModelT, BatchReport]:
    """A copy of the fused `model` whose image signatures take exactly `image_batch` images and
    whose `train` takes exactly `train_batch` samples (None leaves that batch dynamic); the
    pipeline records both in the metadata record. Buffers (weights) are shared with `model`."""
    BatchOptions(image_batch, train_batch)  # validates
    fixed = copy.copy(model)
    fixed.subgraphs = copy.deepcopy(model.subgraphs)
    fixed.buffers = list(model.buffers)
    fixed.metadata = copy.deepcopy(model.metadata)   # later passes set entries on the copy only
    batch_of_subgraph: dict[int, tuple[int, str]] = {}
    for key, batch in signature_batches(image_batch, train_batch).items():
        index = model_io.signature_subgraph(fixed, key)
        if index is None:
            raise UnsupportedModelError(f"the model has no '{key}' signature to fix the batch of")
        if batch is None:
            continue
        _check_signature_inputs(fixed, key, index)
        for reached in audit.reachable_subgraphs(fixed, index):
            if not _dynamic_tensors(fixed, reached):
                continue  # e.g. the variables' init subgraph every signature's CALL_ONCE runs
            previous = batch_of_subgraph.setdefault(reached, (batch, key))
            if previous[0] != batch:
                raise UnsupportedModelError(
                    f"subgraph {reached} is run by '{previous[1]}' (batch {previous[0]}) and '{key}' "
                    f"(batch {batch}); give both the same batch")
    count = sum(_fix_subgraph(fixed, index, batch) for index, (batch, _) in sorted(batch_of_subgraph.items()))
    return fixed, BatchReport(image_batch, train_batch, note, count)


def _check_signature_inputs(model: model_io.ModelT, key: str, index: int) -> None:
    """Only the first dimension of a signature's inputs may be dynamic: a static batch cannot
    make e.g. a dynamic image size static."""
    signature = next(s for s in model.signatureDefs if s.signatureKey.decode() == key)
    subgraph = model.subgraphs[index]
    for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
        shape = model_io.tensor_shape(subgraph.tensors[tensor_map.tensorIndex])
        if any(d < 0 for d in shape[1:]):
            raise UnsupportedModelError(
                f"--batch: '{key}' tensor '{tensor_map.name.decode()}' has shape {shape}: only its "
                "batch may be dynamic to make it static; give a base whose input has fixed sizes")


def _dynamic_tensors(model: model_io.ModelT, index: int) -> list:
    """The subgraph's non-constant tensors with one dynamic (-1) dimension: the batch. A tensor
    with two (one of them not the batch) is sized by TFLite when it runs and stays so."""
    dynamic = []
    for tensor in model.subgraphs[index].tensors or []:
        signature = np.asarray(tensor.shapeSignature if tensor.shapeSignature is not None else [], np.int64)
        if (signature < 0).sum() == 1 and not model_io.buffer_bytes(model, tensor.buffer):
            dynamic.append(tensor)
    return dynamic


def _fix_subgraph(model: model_io.ModelT, index: int, batch: int) -> int:
    """Sets the dynamic batch of the subgraph's non-constant tensors to `batch`."""
    tensors = _dynamic_tensors(model, index)
    for tensor in tensors:
        signature = np.asarray(tensor.shapeSignature, np.int32)
        static = np.where(signature < 0, batch, signature).astype(np.int32)
        tensor.shape, tensor.shapeSignature = static, static.copy()
    return len(tensors)
