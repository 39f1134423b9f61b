// Finding the "tflite_transfer" metadata JSON inside a .tflite file without the TFLite library.
#include <cstring>
#include <optional>

#include "errors.h"
#include "model_metadata.h"
#include "text.h"

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
    throw InvalidInputError(Printable(source_) + ": corrupt TFLite file (an offset points outside it)");
  }

 private:
  const std::vector<uint8_t>& bytes_;
  std::string source_;
};

}  // namespace

std::string FindMetadataJson(const std::vector<uint8_t>& bytes, const std::string& source) {
  if (bytes.size() < 8 || std::memcmp(bytes.data() + 4, "TFL3", 4) != 0) {
    throw InvalidInputError(Printable(source) + ": not a TFLite model (no TFL3 file identifier)");
  }
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
  throw UnsupportedModelError(Printable(source) + ": not a tflite-transfer model (no '" +
                              std::string(kMetadataName) +
                              "' metadata); compile it with compile-transfer");
}

}  // namespace tflite_transfer
