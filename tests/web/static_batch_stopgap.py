"""STOPGAP until the compiler's `--batch=IMAGES,TRAIN` lands on main (helper `batch`):
turns a compiled model into a static-batch one by fixing the batch dimension of every
signature input/output and writing `image_batch`/`train_batch` into the metadata (contract
version 2 with a stamped model digest). Delete when the real option is merged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.compiler import model_io
from tflite_transfer.runtime import contract


def make_static_batch(model_bytes: bytes, image_batch: int, train_batch: int) -> bytes:
    model = model_io.read_model_bytes(model_bytes)
    batches = {name: image_batch for name in contract.IMAGE_SIGNATURES}
    batches[contract.TRAIN] = train_batch
    for signature in model.signatureDefs:
        batch = batches.get(signature.signatureKey.decode())
        if batch is None:
            continue
        subgraph = model.subgraphs[signature.subgraphIndex]
        for item in [*signature.inputs, *signature.outputs]:
            if item.name.decode() == contract.LOSS:
                continue
            tensor = subgraph.tensors[item.tensorIndex]
            tensor.shape = np.array([batch, *list(tensor.shape)[1:]], np.int32)
            if tensor.shapeSignature is not None:
                tensor.shapeSignature = np.array([batch, *list(tensor.shapeSignature)[1:]], np.int32)
    for entry in model.metadata:
        if entry.name.decode() == contract.METADATA_KEY:
            metadata = contract.ModelMetadata.from_json(model_io.buffer_bytes(model, entry.buffer))
            metadata = dataclasses.replace(metadata, image_batch=image_batch, train_batch=train_batch,
                                           contract_version=2, model_digest=contract.DIGEST_PLACEHOLDER)
            model.buffers[entry.buffer] = model_io.make_buffer(metadata.to_json().encode())
    return contract.stamp_digest(model_io.write_model_bytes(model))
