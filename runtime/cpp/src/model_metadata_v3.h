// Contract version 3's part of the metadata record, as runtime/contract_tensors.py reads and
// checks it (runtime/SPEC.md#metadata-record, "What a reader of version 3 does"): the tensor name of each role
// (`names`), the model's input of any kind (`input`), the bottleneck adapter at a spatial cut.
#ifndef TFLITE_TRANSFER_MODEL_METADATA_V3_H_
#define TFLITE_TRANSFER_MODEL_METADATA_V3_H_

#include <string>
#include <vector>

#include "json.h"
#include "model_metadata.h"

namespace tflite_transfer {

// The roles of `names`, in the order of the metadata and `--names`.
inline constexpr const char* kNameRoles[] = {"input", "bottleneck", "label", "loss", "output"};
// The input's kinds, and what turns a spatial cut into [batch, features].
inline constexpr char kImageKind[] = "image";
inline constexpr char kTensorKind[] = "tensor";
inline constexpr const char* kBottleneckAdapters[] = {"flatten", "mean", "max"};

// Reads `names`, `input` and `bottleneck_adapter` of a version 3 record into `metadata`
// (UnsupportedModelError naming `source` when one is missing or of the wrong type).
void ParseVersion3Fields(const Json& root, ModelMetadata& metadata, const std::string& source);

// What is wrong with a set of names ([] when nothing): a name that is not plain
// ([A-Za-z_][A-Za-z0-9_.-]{0,63}), two roles of one signature sharing a name, a role named like
// a state variable.
std::vector<std::string> NamesProblems(const TensorNames& names, const std::vector<StateSpec>& state);

// The checks of a version 3 record: names, output == names.output, input (kind, shape sizes
// >= 1, ranges finite with low < high), the adapter's feature count.
std::vector<std::string> Version3Problems(const ModelMetadata& metadata);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_METADATA_V3_H_
