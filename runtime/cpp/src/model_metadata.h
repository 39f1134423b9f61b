// The compiler's "tflite_transfer" JSON metadata entry of a compiled model: the state
// variables (names, shapes, dtypes) that save/restore carry and the fingerprint a checkpoint
// must match. Read straight from the FlatBuffer, so only the TFLite C API is needed.
#ifndef TFLITE_TRANSFER_MODEL_METADATA_H_
#define TFLITE_TRANSFER_MODEL_METADATA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "tensor.h"

namespace tflite_transfer {

inline constexpr char kMetadataName[] = "tflite_transfer";

struct StateSpec {
  std::string name;
  DType dtype;
  Shape shape;
};

struct ModelMetadata {
  std::string fingerprint;      // lowercase hex; checkpoints carry it as model_fingerprint
  int64_t num_outputs = 0;      // classes (or regression targets for loss "mse")
  int64_t bottleneck_size = 0;  // D of the float32 [batch, D] bottleneck
  std::string output;           // infer's output name: "probabilities" or "predictions"
  std::string loss;             // "softmax_cross_entropy" or "mse"
  std::vector<StateSpec> state;  // in the metadata's order

  bool classifies() const { return loss != "mse"; }
  const StateSpec* FindState(const std::string& name) const;
};

// Throws InvalidInputError for a file that is not a TFLite FlatBuffer, UnsupportedModelError
// for one without (or with unusable) tflite_transfer metadata. `source` names the file.
ModelMetadata ReadModelMetadata(const std::vector<uint8_t>& model_bytes, const std::string& source);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_METADATA_H_
