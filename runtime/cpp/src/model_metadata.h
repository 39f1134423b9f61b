// The compiler's "tflite_transfer" JSON metadata entry of a compiled model, typed as in the
// contract module (runtime/contract.py, ModelMetadata): state variables with roles, the label
// spec, fixed batches, the fingerprint checkpoints must match and the model digest. Contract
// versions 2 and 3 are read as written (version 3 adds the model's own tensor names, the input
// of any kind with its range, one-hot labels and the bottleneck adapter: model_metadata_v3.cc);
// version 1 (state as {name: {shape, dtype}}, no roles, label implied by the loss, no digest)
// is upgraded the way contract._upgrade_version_1 does.
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
  std::string role;   // kernel, bias, slot, step, learning_rate or base_state (a stateful
                      // base's own variable: any dtype, values need not be finite)
  std::string layer;  // kernel, bias, slot: the head layer (empty otherwise)
  std::string slot;   // slot: the optimizer slot ("m", "v", "momentum")
  std::string of;     // slot: the weight it belongs to
};

struct LabelSpec {
  std::string kind;  // "class_ids" (int32 []), "targets" (float32 [k]) or "one_hot" (float32 [k],
                     // rows >= 0 summing to 1: one-hot or soft targets; version 3)
  DType dtype = DType::kInt32;
  Shape shape;       // per sample, without the batch dimension
};

// The tensor name of each role in the signatures (contract_tensors.TensorNames): a version 3
// model's own (`names`), or the fixed names of versions 1 and 2 (`output` from the record).
struct TensorNames {
  std::string input = contract::kImageTensor;
  std::string bottleneck = contract::kBottleneckTensor;
  std::string label = contract::kLabelTensor;
  std::string loss = contract::kLossTensor;
  std::string output = contract::kProbabilitiesTensor;
};

// The model's input (version 3's `input`, contract_tensors.InputSpec): the base's input,
// whatever it is, and the values the app feeds when known.
struct InputSpec {
  std::string kind;   // "image" ([H, W, C], C in 1, 3, 4) or "tensor"
  DType dtype = DType::kFloat32;
  Shape shape;        // per sample, without the batch dimension
  std::optional<std::pair<double, double>> range;       // what the app feeds; none: not known
  std::optional<std::pair<double, double>> base_range;  // what the base takes
};

// What turns a spatial cut into [batch, features] (version 3, informational at run time).
struct BottleneckAdapter {
  std::string kind;   // "flatten", "mean" or "max"
  Shape cut_shape;    // the cut per sample: [H, W, C] or [T, C]
};

struct ModelMetadata {
  int contract_version = contract::kContractVersion;
  std::string fingerprint;      // lowercase hex; checkpoints carry it as model_fingerprint
  int64_t num_outputs = 0;      // classes (or regression targets for loss "mse")
  int64_t bottleneck_size = 0;  // D of the float32 [batch, D] bottleneck
  std::string output;           // infer's output name (version 3: equal to names.output)
  std::string loss;
  LabelSpec label;
  std::vector<StateSpec> state;  // in the metadata's order
  std::vector<std::string> labels;         // class names, or empty
  std::optional<std::pair<double, double>> image_range;  // versions 1, 2: pixel values a float image may hold
  std::optional<int64_t> image_batch;      // fixed batch of load/infer/train_images; none: any
  std::optional<int64_t> train_batch;      // fixed batch of train; none: any
  std::string model_digest;                // 64 hex (versions 2, 3), empty in version 1
  std::string optimizer;                   // optimizer.name ("sgd", "momentum", "adam", ...), or empty
  double momentum = 0;                     // optimizer.momentum, 0 when absent
  std::optional<double> bottleneck_max_norm2;  // largest |bottleneck|^2 the compiler measured
  TensorNames names;                       // every signature tensor is looked up by these
  std::optional<InputSpec> input;          // version 3; none before (an image, see TransferModel)
  std::optional<BottleneckAdapter> bottleneck_adapter;  // version 3, at a spatial cut

  bool classifies() const { return label.kind == contract::kLabelClassIds || label.kind == contract::kLabelOneHot; }
  // The values the app feeds, when known: input.range (version 3) or image_range.
  std::optional<std::pair<double, double>> input_range() const { return input ? input->range : image_range; }
  // Whether the base keeps state between calls (state entries with role base_state).
  bool stateful() const;
  const StateSpec* FindState(const std::string& name) const;
  // The batch a signature's shapes fix, or nullopt when any batch works (contract.fixed_batch).
  std::optional<int64_t> FixedBatch(const std::string& signature) const;
};

// Parses and checks the metadata JSON; UnsupportedModelError naming `source` for anything wrong.
// A bottleneck_max_norm2 and the optimizer's name and momentum are read when present.
ModelMetadata ParseModelMetadata(std::string_view json, const std::string& source);

// Throws the one-line UnsupportedModelError of an unusable metadata record.
[[noreturn]] void RefuseMetadata(const std::string& source, const std::string& problem);

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
