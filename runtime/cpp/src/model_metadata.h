// The compiler's "tflite_transfer" JSON metadata entry of a compiled model, typed as in the
// contract module (runtime/contract.py, ModelMetadata): state variables with roles, the label
// spec, fixed batches, the fingerprint checkpoints must match and the model digest. Contract
// version 2 is read as written; version 1 (state as {name: {shape, dtype}}, no roles, label
// implied by the loss, no digest) is upgraded the way contract._upgrade_version_1 does.
#ifndef TFLITE_TRANSFER_MODEL_METADATA_H_
#define TFLITE_TRANSFER_MODEL_METADATA_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "contract.h"
#include "tensor.h"

namespace tflite_transfer {

struct StateSpec {
  std::string name;
  DType dtype;
  Shape shape;
  std::string role;   // kernel, bias, slot, step or learning_rate
  std::string layer;  // kernel, bias, slot: the head layer (empty otherwise)
  std::string slot;   // slot: the optimizer slot ("m", "v", "momentum")
  std::string of;     // slot: the weight it belongs to
};

struct LabelSpec {
  std::string kind;  // "class_ids" (int32 []) or "targets" (float32 [k])
  DType dtype = DType::kInt32;
  Shape shape;       // per sample, without the batch dimension
};

struct ModelMetadata {
  int contract_version = contract::kContractVersion;
  std::string fingerprint;      // lowercase hex; checkpoints carry it as model_fingerprint
  int64_t num_outputs = 0;      // classes (or regression targets for loss "mse")
  int64_t bottleneck_size = 0;  // D of the float32 [batch, D] bottleneck
  std::string output;           // infer's output name: "probabilities" or "predictions"
  std::string loss;
  LabelSpec label;
  std::vector<StateSpec> state;  // in the metadata's order
  std::vector<std::string> labels;         // class names, or empty
  std::optional<std::pair<double, double>> image_range;  // pixel values a float image may hold
  std::optional<int64_t> image_batch;      // fixed batch of load/infer/train_images; none: any
  std::optional<int64_t> train_batch;      // fixed batch of train; none: any
  std::string model_digest;                // 64 hex (version 2), empty in version 1

  bool classifies() const { return label.kind == contract::kLabelClassIds; }
  const StateSpec* FindState(const std::string& name) const;
  // The batch a signature's shapes fix, or nullopt when any batch works (contract.fixed_batch).
  std::optional<int64_t> FixedBatch(const std::string& signature) const;
};

// Parses and checks the metadata JSON; UnsupportedModelError naming `source` for anything wrong.
ModelMetadata ParseModelMetadata(std::string_view json, const std::string& source);

// The metadata JSON inside a .tflite file, read with the TFLite schema after the FlatBuffers
// verifier accepted the whole file (model_structure.cc). Throws InvalidInputError for a file
// that is not a valid TFLite FlatBuffer, UnsupportedModelError for one without tflite_transfer
// metadata.
std::string FindMetadataJson(const std::vector<uint8_t>& model_bytes, const std::string& source);

inline ModelMetadata ReadModelMetadata(const std::vector<uint8_t>& model_bytes, const std::string& source) {
  return ParseModelMetadata(FindMetadataJson(model_bytes, source), source);
}

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_METADATA_H_
