#include "demo_checks.h"

#include <cstdio>

#include "errors.h"
#include "files.h"
#include "json.h"
#include "sha256.h"

namespace tflite_transfer {
namespace {

std::string ShapeJson(const Shape& shape) {
  std::string text = "[";
  for (size_t axis = 0; axis < shape.size(); ++axis) text += (axis ? "," : "") + std::to_string(shape[axis]);
  return text + "]";
}

std::string OptionalJson(const std::optional<int64_t>& value) {
  return value ? std::to_string(*value) : "null";
}

// A double that reads back as the same double (Python's json.loads included).
std::string NumberJson(double value) {
  char text[40];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

std::string RangeJson(const std::optional<std::pair<double, double>>& range) {
  return range ? "[" + NumberJson(range->first) + "," + NumberJson(range->second) + "]" : "null";
}

std::string InputJson(const InputSpec& input) {
  return "{\"base_range\":" + RangeJson(input.base_range) + ",\"dtype\":\"" + NumpyName(input.dtype) +
         "\",\"kind\":" + JsonQuoteAscii(input.kind) + ",\"range\":" + RangeJson(input.range) +
         ",\"shape\":" + ShapeJson(input.shape) + "}";
}

}  // namespace

std::string DescribeCheckpoint(const Checkpoint& checkpoint) {
  std::string text = "{\"format_version\":" + std::to_string(checkpoint.format_version) +
                     ",\"model_fingerprint\":" + JsonQuoteAscii(checkpoint.model_fingerprint) + ",\"metadata\":{";
  bool first = true;
  for (const auto& [key, value] : checkpoint.metadata) {
    text += (first ? "" : ",") + JsonQuoteAscii(key) + ":" + JsonQuoteAscii(value);
    first = false;
  }
  text += "},\"tensors\":{";
  first = true;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    text += (first ? "" : ",") + JsonQuoteAscii(name) + ":{\"dtype\":\"" + NumpyName(tensor.dtype) +
            "\",\"shape\":" + ShapeJson(tensor.shape) + ",\"sha256\":\"" +
            Sha256Hex(tensor.bytes.data(), tensor.bytes.size()) + "\"}";
    first = false;
  }
  return text + "}}";
}

std::string DescribeMetadata(const ModelMetadata& metadata) {
  std::string labels = "[";
  for (size_t index = 0; index < metadata.labels.size(); ++index) {
    labels += (index ? "," : "") + JsonQuoteAscii(metadata.labels[index]);
  }
  labels += "]";
  std::string state = "[";
  for (size_t index = 0; index < metadata.state.size(); ++index) {
    const StateSpec& spec = metadata.state[index];
    state += std::string(index ? "," : "") + "{\"dtype\":\"" + NumpyName(spec.dtype) + "\"";
    if (!spec.layer.empty()) state += ",\"layer\":" + JsonQuoteAscii(spec.layer);
    state += ",\"name\":" + JsonQuoteAscii(spec.name);
    if (!spec.of.empty()) state += ",\"of\":" + JsonQuoteAscii(spec.of);
    state += ",\"role\":" + JsonQuoteAscii(spec.role) + ",\"shape\":" + ShapeJson(spec.shape);
    if (!spec.slot.empty()) state += ",\"slot\":" + JsonQuoteAscii(spec.slot);
    state += "}";
  }
  state += "]";
  auto names = [](const std::vector<std::string>& list) {
    std::string text = "[";
    for (size_t index = 0; index < list.size(); ++index) text += (index ? "," : "") + JsonQuoteAscii(list[index]);
    return text + "]";
  };
  std::string signatures = "{";
  for (const SignatureSpec& spec : SignatureSpecs(metadata)) {
    signatures += (signatures.size() > 1 ? "," : "") + JsonQuoteAscii(spec.name) + ":{\"inputs\":" +
                  names(spec.inputs) + ",\"outputs\":" + names(spec.outputs) + "}";
  }
  signatures += "}";
  const TensorNames& tensor_names = metadata.names;
  const std::string names_json = "{\"bottleneck\":" + JsonQuoteAscii(tensor_names.bottleneck) + ",\"input\":" +
                                 JsonQuoteAscii(tensor_names.input) + ",\"label\":" + JsonQuoteAscii(tensor_names.label) +
                                 ",\"loss\":" + JsonQuoteAscii(tensor_names.loss) + ",\"output\":" +
                                 JsonQuoteAscii(tensor_names.output) + "}";
  const auto& adapter = metadata.bottleneck_adapter;
  return "{\"bottleneck_adapter\":" +
         (adapter ? "{\"cut_shape\":" + ShapeJson(adapter->cut_shape) + ",\"kind\":" + JsonQuoteAscii(adapter->kind) + "}"
                  : std::string("null")) +
         ",\"bottleneck_max_norm2\":" + (metadata.bottleneck_max_norm2 ? NumberJson(*metadata.bottleneck_max_norm2) : "null") +
         ",\"bottleneck_size\":" + std::to_string(metadata.bottleneck_size) +
         ",\"contract_version\":" + std::to_string(metadata.contract_version) +
         ",\"fingerprint\":" + JsonQuoteAscii(metadata.fingerprint) +
         ",\"image_batch\":" + OptionalJson(metadata.image_batch) + ",\"image_range\":" + RangeJson(metadata.image_range) +
         ",\"input\":" + (metadata.input ? InputJson(*metadata.input) : "null") +
         ",\"label\":{\"dtype\":\"" + NumpyName(metadata.label.dtype) + "\",\"kind\":" +
         JsonQuoteAscii(metadata.label.kind) + ",\"shape\":" + ShapeJson(metadata.label.shape) + "}" +
         ",\"labels\":" + labels + ",\"loss\":" + JsonQuoteAscii(metadata.loss) +
         ",\"model_digest\":" + (metadata.model_digest.empty() ? "null" : JsonQuoteAscii(metadata.model_digest)) +
         ",\"names\":" + names_json + ",\"num_outputs\":" + std::to_string(metadata.num_outputs) +
         ",\"optimizer\":{\"momentum\":" + NumberJson(metadata.momentum) + ",\"name\":" + JsonQuoteAscii(metadata.optimizer) +
         "},\"output\":" + JsonQuoteAscii(metadata.output) +
         ",\"signatures\":" + signatures + ",\"state\":" + state + ",\"train_batch\":" + OptionalJson(metadata.train_batch) + "}";
}

std::string DescribeModel(const TransferModel& model) {
  std::string metadata = DescribeMetadata(model.metadata());
  metadata.pop_back();  // the closing brace
  return metadata + ",\"digest_checked\":" + (model.digest_checked() ? "true" : "false") +
         ",\"model_input\":" + InputJson(model.input_spec()) + "}";
}

ModelMetadata ReadMetadataJsonFile(const std::string& path) {
  std::vector<uint8_t> bytes;
  try {
    bytes = ReadableFile(path, "metadata file").ReadAll();
  } catch (const FileError& error) {
    throw InvalidInputError(error.what());
  }
  return ParseModelMetadata(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

}  // namespace tflite_transfer
