// Verifying the model's FlatBuffer and finding the "tflite_transfer" metadata JSON in it with
// the TFLite schema (the structure checks are in model_structure.cc).
#include "model_flatbuffer.h"

#include <algorithm>
#include <cstring>

#include "errors.h"
#include "model_metadata.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "text.h"

namespace tflite_transfer {

const tflite::Model& VerifiedModel(const std::vector<uint8_t>& bytes, const std::string& source) {
  if (bytes.size() < 8 || !tflite::ModelBufferHasIdentifier(bytes.data())) {
    throw InvalidInputError(Printable(source) + ": not a TFLite model (no TFL3 file identifier)");
  }
  // A model over 2 GB keeps its weights after the FlatBuffer (Buffer.offset/size): the verifier
  // covers the FlatBuffer part, which is always smaller than FlatBuffers' 2 GB limit.
  const size_t length = std::min<size_t>(bytes.size(), FLATBUFFERS_MAX_BUFFER_SIZE - 1);
  flatbuffers::Verifier verifier(bytes.data(), length);
  if (!tflite::VerifyModelBuffer(verifier)) {
    throw InvalidInputError(Printable(source) + ": corrupt TFLite file (the FlatBuffers verifier refuses it: an "
                            "offset, size or nesting outside the file); copy or compile it again");
  }
  return *tflite::GetModel(bytes.data());
}

std::string BufferBytes(const tflite::Model& model, const std::vector<uint8_t>& bytes, uint32_t index,
                        const std::string& source) {
  const auto* buffers = model.buffers();
  if (!buffers || index >= buffers->size() || !buffers->Get(index)) {
    throw InvalidInputError(Printable(source) + ": corrupt TFLite file (buffer " + std::to_string(index) +
                            " does not exist)");
  }
  const tflite::Buffer& buffer = *buffers->Get(index);
  if (buffer.data() && buffer.data()->size()) {
    return std::string(reinterpret_cast<const char*>(buffer.data()->data()), buffer.data()->size());
  }
  if (buffer.offset() > 1) {  // offset 1 is the converter's "no data" marker; data lives in the file
    const uint64_t offset = buffer.offset(), size = buffer.size();
    if (offset > bytes.size() || size > bytes.size() - offset) {
      throw InvalidInputError(Printable(source) + ": corrupt TFLite file (buffer " + std::to_string(index) +
                              " lies outside the file)");
    }
    return std::string(reinterpret_cast<const char*>(bytes.data() + offset), static_cast<size_t>(size));
  }
  return "";
}

std::string FindMetadataJson(const std::vector<uint8_t>& bytes, const std::string& source) {
  const tflite::Model& model = VerifiedModel(bytes, source);
  if (const auto* metadata = model.metadata()) {
    for (const tflite::Metadata* entry : *metadata) {
      if (entry && entry->name() && entry->name()->str() == contract::kMetadataKey) {
        return BufferBytes(model, bytes, entry->buffer(), source);
      }
    }
  }
  throw UnsupportedModelError(Printable(source) + ": not a tflite-transfer model (no '" +
                              std::string(contract::kMetadataKey) + "' metadata); compile it with compile-transfer");
}

}  // namespace tflite_transfer
