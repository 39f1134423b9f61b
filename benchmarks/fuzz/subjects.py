"""Test helpers that rewrite a compiled model's metadata (and signature shapes), then stamp its
digest as the compiler's last step does (runtime/SPEC.md#model-digest): contract version 2 models and fixed-batch
models from the existing pipeline, until the compiler emits them itself."""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_transfer.runtime import contract


def rewrite_model(model_bytes: bytes, image_batch: int | None = None, train_batch: int | None = None,
                  **metadata_changes) -> bytes:
    """The model as contract version 2 with a stamped digest; fixed batches (if given) set in
    the metadata and in the batch dimension of every signature input/output tensor."""
    from tflite_transfer.compiler.flatbuffer import model_io

    model = model_io.read_model_bytes(model_bytes)
    entry = next(m for m in model.metadata if m.name.decode() == contract.METADATA_KEY)
    metadata = contract.ModelMetadata.from_json(model_io.buffer_bytes(model, entry.buffer))
    metadata = dataclasses.replace(metadata, contract_version=2, model_digest=contract.DIGEST_PLACEHOLDER,
                                   image_batch=image_batch, train_batch=train_batch, **metadata_changes)
    model.buffers[entry.buffer] = model_io.make_buffer(metadata.to_json().encode())
    for signature in model.signatureDefs:
        batch = metadata.fixed_batch(signature.signatureKey.decode())
        if batch is None:
            continue
        subgraph = model.subgraphs[signature.subgraphIndex]
        for tensor_map in list(signature.inputs) + list(signature.outputs):
            tensor = subgraph.tensors[tensor_map.tensorIndex]
            if tensor.shape is not None and len(tensor.shape):
                tensor.shape = np.array([batch, *list(tensor.shape)[1:]], np.int32)
            if tensor.shapeSignature is not None and len(tensor.shapeSignature):
                tensor.shapeSignature = np.array([batch, *list(tensor.shapeSignature)[1:]], np.int32)
    written = model_io.write_model_bytes(model)
    return contract.stamp_digest(written)
