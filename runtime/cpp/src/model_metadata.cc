#include "model_metadata.h"

#include <cstring>
#include <optional>

#include "errors.h"
#include "json.h"

namespace tflite_transfer {
namespace {

// A bounds-checked reader of just the FlatBuffer tables we need (schema.fbs: Model.buffers is
// field 4, Model.metadata field 6; Metadata{name: string, buffer: uint}; Buffer{data: [ubyte],
// offset: ulong, size: ulong}). Every offset is checked, so a corrupt file is an error, not a
// crash. The TFLite library verifies the whole model again when the interpreter loads it.
class FlatBufferReader {
 public:
  FlatBufferReader(const std::vector<uint8_t>& bytes, std::string source)
      : bytes_(bytes), source_(std::move(source)) {}

  uint32_t U32(size_t at) const { return Read<uint32_t>(at); }

  // Position of the table that the uoffset stored at `at` points to.
  size_t Deref(size_t at) const {
    size_t target = at + U32(at);
    Check(target, 4);
    return target;
  }

  // Position of field `index` of the table at `table`, or nullopt if absent.
  std::optional<size_t> Field(size_t table, int index) const {
    int32_t vtable_offset = Read<int32_t>(table);
    int64_t vtable = static_cast<int64_t>(table) - vtable_offset;
    if (vtable < 0) Corrupt();
    uint16_t vtable_size = Read<uint16_t>(static_cast<size_t>(vtable));
    size_t entry = 4 + 2 * static_cast<size_t>(index);
    if (entry + 2 > vtable_size) return std::nullopt;
    uint16_t field_offset = Read<uint16_t>(static_cast<size_t>(vtable) + entry);
    if (field_offset == 0) return std::nullopt;
    return table + field_offset;
  }

  // A vector field: (position of the first element, element count).
  std::pair<size_t, uint32_t> Vector(size_t table, int index, size_t element_size) const {
    std::optional<size_t> field = Field(table, index);
    if (!field) return {0, 0};
    size_t vector = Deref(*field);
    uint32_t count = U32(vector);
    Check(vector + 4, static_cast<uint64_t>(count) * element_size);
    return {vector + 4, count};
  }

  std::string String(size_t table, int index) const {
    auto [start, length] = Vector(table, index, 1);
    return std::string(reinterpret_cast<const char*>(bytes_.data() + start), length);
  }

  template <typename T> T Read(size_t at) const {
    Check(at, sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + at, sizeof(T));  // FlatBuffers are little-endian
    return value;
  }

  void Check(uint64_t at, uint64_t size) const {
    if (at > bytes_.size() || size > bytes_.size() - at) Corrupt();
  }

  [[noreturn]] void Corrupt() const {
    throw InvalidInputError(source_ + ": corrupt TFLite file (an offset points outside it)");
  }

 private:
  const std::vector<uint8_t>& bytes_;
  std::string source_;
};

std::string FindMetadataJson(const std::vector<uint8_t>& bytes, const std::string& source) {
  FlatBufferReader reader(bytes, source);
  size_t model = reader.Deref(0);
  auto [metadata, metadata_count] = reader.Vector(model, 6, 4);
  auto [buffers, buffer_count] = reader.Vector(model, 4, 4);
  for (uint32_t index = 0; index < metadata_count; ++index) {
    size_t entry = reader.Deref(metadata + 4 * index);
    if (reader.String(entry, 0) != kMetadataName) continue;
    std::optional<size_t> buffer_field = reader.Field(entry, 1);
    uint32_t buffer_index = buffer_field ? reader.U32(*buffer_field) : 0;
    if (buffer_index >= buffer_count) reader.Corrupt();
    size_t buffer = reader.Deref(buffers + 4 * buffer_index);
    auto [data, size] = reader.Vector(buffer, 0, 1);
    if (size == 0) {
      // Models over 2 GB keep buffer data outside the FlatBuffer: offset/size from file start.
      std::optional<size_t> offset = reader.Field(buffer, 1), length = reader.Field(buffer, 2);
      if (offset && length) {
        uint64_t at = reader.Read<uint64_t>(*offset), count = reader.Read<uint64_t>(*length);
        reader.Check(at, count);
        return std::string(reinterpret_cast<const char*>(bytes.data() + at), count);
      }
    }
    return std::string(reinterpret_cast<const char*>(bytes.data() + data), size);
  }
  throw UnsupportedModelError(source + ": not a tflite-transfer model (no '" +
                              std::string(kMetadataName) +
                              "' metadata); compile it with compile-transfer");
}

[[noreturn]] void BadMetadata(const std::string& source, const std::string& problem) {
  throw UnsupportedModelError(source + ": the '" + std::string(kMetadataName) +
                              "' metadata is unusable: " + problem +
                              "; recompile the model with compile-transfer");
}

int64_t RequireInt(const Json& root, const char* key, const std::string& source) {
  const Json* value = root.Find(key);
  std::optional<int64_t> number = value ? value->AsInt64() : std::nullopt;
  if (!number || *number < 1) BadMetadata(source, std::string("'") + key + "' is not a positive integer");
  return *number;
}

std::string RequireString(const Json& root, const char* key, const std::string& source) {
  const Json* value = root.Find(key);
  if (!value || !value->is_string() || value->text.empty()) {
    BadMetadata(source, std::string("'") + key + "' is not a non-empty string");
  }
  return value->text;
}

}  // namespace

const StateSpec* ModelMetadata::FindState(const std::string& name) const {
  for (const StateSpec& spec : state) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

ModelMetadata ReadModelMetadata(const std::vector<uint8_t>& model_bytes, const std::string& source) {
  if (model_bytes.size() < 8 || std::memcmp(model_bytes.data() + 4, "TFL3", 4) != 0) {
    throw InvalidInputError(source + ": not a TFLite model (no TFL3 file identifier)");
  }
  std::string text = FindMetadataJson(model_bytes, source);
  Json root;
  try {
    root = ParseJson(text);
  } catch (const JsonError& error) {
    BadMetadata(source, std::string("invalid JSON (") + error.what() + ")");
  }
  if (!root.is_object()) BadMetadata(source, "not a JSON object");
  ModelMetadata metadata;
  metadata.fingerprint = RequireString(root, "fingerprint", source);
  metadata.num_outputs = RequireInt(root, "num_outputs", source);
  metadata.bottleneck_size = RequireInt(root, "bottleneck_size", source);
  metadata.output = RequireString(root, "output", source);
  const Json* loss = root.Find("loss");
  metadata.loss = loss && loss->is_string() ? loss->text : "softmax_cross_entropy";
  const Json* state = root.Find("state");
  if (!state || !state->is_object() || state->members.empty()) {
    BadMetadata(source, "'state' is not a non-empty object");
  }
  for (const auto& [name, spec] : state->members) {
    const Json* dtype = spec.Find("dtype");
    const Json* shape = spec.Find("shape");
    std::optional<DType> parsed =
        dtype && dtype->is_string() ? DTypeFromNumpyName(dtype->text) : std::nullopt;
    if (!parsed || !shape || !shape->is_array()) {
      BadMetadata(source, "state '" + name + "' needs a known 'dtype' and a 'shape' list");
    }
    StateSpec state_spec{name, *parsed, {}};
    for (const Json& size : shape->items) {
      std::optional<int64_t> value = size.AsInt64();
      if (!value || *value < 0) BadMetadata(source, "state '" + name + "' has a bad shape");
      state_spec.shape.push_back(*value);
    }
    metadata.state.push_back(std::move(state_spec));
  }
  return metadata;
}

}  // namespace tflite_transfer
