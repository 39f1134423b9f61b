#include "demo_checks.h"

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
  return "{\"bottleneck_size\":" + std::to_string(metadata.bottleneck_size) +
         ",\"contract_version\":" + std::to_string(metadata.contract_version) +
         ",\"fingerprint\":" + JsonQuoteAscii(metadata.fingerprint) +
         ",\"image_batch\":" + OptionalJson(metadata.image_batch) +
         ",\"label\":{\"dtype\":\"" + NumpyName(metadata.label.dtype) + "\",\"kind\":" +
         JsonQuoteAscii(metadata.label.kind) + ",\"shape\":" + ShapeJson(metadata.label.shape) + "}" +
         ",\"labels\":" + labels + ",\"loss\":" + JsonQuoteAscii(metadata.loss) +
         ",\"model_digest\":" + (metadata.model_digest.empty() ? "null" : JsonQuoteAscii(metadata.model_digest)) +
         ",\"num_outputs\":" + std::to_string(metadata.num_outputs) + ",\"output\":" + JsonQuoteAscii(metadata.output) +
         ",\"signatures\":" + signatures + ",\"state\":" + state + ",\"train_batch\":" + OptionalJson(metadata.train_batch) + "}";
}

std::string DescribeModel(const TransferModel& model) {
  std::string metadata = DescribeMetadata(model.metadata());
  metadata.pop_back();  // the closing brace
  return metadata + ",\"digest_checked\":" + (model.digest_checked() ? "true" : "false") +
         ",\"image\":{\"dtype\":\"" + NumpyName(model.image_dtype()) + "\",\"shape\":" +
         ShapeJson(model.image_shape()) + "}}";
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
