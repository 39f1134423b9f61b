// The demo's inspection modes: read a checkpoint, a model or a metadata JSON file with the
// runtime's own readers and print what they parsed as one JSON object (ASCII, names escaped).
// Tests compare that with the Python readers and golden files, and fuzzers drive the readers
// through them: a bad file gives one "error: ..." line and exit status 1, never a crash or hang.
#ifndef TFLITE_TRANSFER_DEMO_CHECKS_H_
#define TFLITE_TRANSFER_DEMO_CHECKS_H_

#include <string>

#include "checkpoint.h"
#include "model_metadata.h"
#include "transfer_model.h"

namespace tflite_transfer {

// {"format_version", "model_fingerprint", "metadata": {...}, "tensors": {name: {"dtype",
// "shape", "sha256"}}} (sha256 of each tensor's little-endian bytes).
std::string DescribeCheckpoint(const Checkpoint& checkpoint);

// {"contract_version", "fingerprint", "num_outputs", "bottleneck_size", "output", "loss",
// "label": {...}, "labels", "image_batch", "train_batch", "image_range", "model_digest",
// "bottleneck_max_norm2", "optimizer": {"name", "momentum"}, "names": {role: name}, "input":
// {"kind", "dtype", "shape", "range", "base_range"} (null before version 3),
// "bottleneck_adapter", "signatures": {name: {"inputs", "outputs"}} (the exact names derived
// from it), "state": [{"name", "role", "dtype", "shape", "layer"?, "slot"?, "of"?}]}, keys sorted.
std::string DescribeMetadata(const ModelMetadata& metadata);

// DescribeMetadata plus "model_input" (the input the model takes: TransferModel::input_spec) and
// "digest_checked".
std::string DescribeModel(const TransferModel& model);

// Reads a metadata JSON file (as stored in a model's "tflite_transfer" entry).
ModelMetadata ReadMetadataJsonFile(const std::string& path);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_DEMO_CHECKS_H_
