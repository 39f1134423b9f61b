// Reading checkpoints: every size is checked against the file before anything is read or
// allocated from it, and the checksum is verified before the header is parsed (and again
// over the tensor bytes as they are read). Read for a model, a file that cannot hold that
// model's state is refused from its header alone, before its data is hashed or read.
#include <algorithm>

#include "checkpoint.h"
#include "errors.h"
#include "files.h"
#include "json.h"
#include "sha256.h"
#include "text.h"

namespace tflite_transfer {
namespace {

using contract::kCheckpointMetadataKey;
using contract::kLengthFieldBytes;
constexpr size_t kChunkBytes = 1 << 20;  // the checksum streams the file in chunks this big
constexpr size_t kDigits = contract::kDigestHexDigits;

uint64_t GetU64LittleEndian(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int byte = 7; byte >= 0; --byte) value = (value << 8) | bytes[byte];
  return value;
}

CheckpointError Corrupt(const std::string& path, const std::string& problem) {
  return CheckpointError("checkpoint " + Printable(path) + " is corrupt or incomplete: " + problem +
                         "; use an older checkpoint or start training from the model's initial weights");
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

std::string OffsetsText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// sha256 of the file with the checksum's digits as '0': the length field and header from
// memory, the data section streamed from the file in bounded memory.
std::string FileChecksum(const ReadableFile& file, const std::string& path, const unsigned char* length_field,
                         std::string header, size_t checksum_at) {
  header.replace(checksum_at, kDigits, std::string(kDigits, '0'));
  Sha256 checksum;
  checksum.Update(length_field, kLengthFieldBytes);
  checksum.Update(header);
  std::vector<unsigned char> chunk(std::min<uint64_t>(kChunkBytes, file.size()));
  for (uint64_t at = kLengthFieldBytes + header.size(); at < file.size();) {
    size_t count = static_cast<size_t>(std::min<uint64_t>(chunk.size(), file.size() - at));
    if (!file.ReadAt(at, chunk.data(), count)) {
      throw Corrupt(path, "the file ended early (was it truncated while being read?)");
    }
    checksum.Update(chunk.data(), count);
    at += count;
  }
  return checksum.HexDigest();
}

Entry ValidateEntry(const std::string& path, const std::string& name, const Json& entry, uint64_t data_size) {
  if (name.empty()) throw Corrupt(path, "a tensor has an empty name");
  const std::string quoted = Quoted(name);
  if (!entry.is_object() || entry.members.size() != 3 || !entry.Find("dtype") || !entry.Find("shape") ||
      !entry.Find("data_offsets")) {
    throw Corrupt(path, "tensor " + quoted + " must be an object with exactly the keys "
                        "['data_offsets', 'dtype', 'shape']");
  }
  const Json& code = *entry.Find("dtype");
  std::optional<DType> dtype = code.is_string() ? DTypeFromSafetensorsCode(code.text) : std::nullopt;
  if (!dtype) {
    throw Corrupt(path, "tensor " + quoted + " has unsupported dtype " +
                        (code.is_string() ? Printable(JsonQuote(code.text)) : code.KindName()) +
                        "; this reader supports F64, F32, F16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL");
  }
  const Json& shape = *entry.Find("shape");
  Entry result{name, *dtype, {}, 0, 0};
  const std::string bad_shape = "tensor " + quoted + " has a bad shape; expected a list of at most " +
                                std::to_string(contract::kMaxDimensions) + " non-negative integers";
  if (!shape.is_array() || shape.items.size() > contract::kMaxDimensions) throw Corrupt(path, bad_shape);
  // Element count times item size, refusing anything that overflows 64 bits.
  unsigned __int128 expected_bytes = ItemSize(*dtype);
  for (const Json& size : shape.items) {
    std::optional<uint64_t> value = size.AsUInt64();
    if (!value || *value > static_cast<uint64_t>(INT64_MAX)) throw Corrupt(path, bad_shape);
    result.shape.push_back(static_cast<int64_t>(*value));
    expected_bytes *= *value;
    if (expected_bytes > UINT64_MAX) expected_bytes = static_cast<unsigned __int128>(UINT64_MAX) + 1;
  }
  const Json& offsets = *entry.Find("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.items.size() == 2) {
    begin = offsets.items[0].AsUInt64();
    end = offsets.items[1].AsUInt64();
  }
  if (!begin || !end) {
    throw Corrupt(path, "tensor " + quoted + " has bad data_offsets; expected [begin, end] as non-negative integers");
  }
  if (!(*begin <= *end && *end <= data_size)) {
    throw Corrupt(path, "tensor " + quoted + " has data_offsets " + OffsetsText(*begin, *end) + " outside the " +
                        std::to_string(data_size) + "-byte data section (truncated file?)");
  }
  if (expected_bytes != *end - *begin) {
    throw Corrupt(path, "tensor " + quoted + " is " + ShapeString(result.shape) + " " + code.text +
                        " but its data_offsets " + OffsetsText(*begin, *end) + " span " +
                        std::to_string(*end - *begin) + " bytes");
  }
  result.begin = *begin;
  result.end = *end;
  return result;
}

std::map<std::string, std::string> ValidateMetadata(const std::string& path, const Json* metadata,
                                                    std::optional<size_t> checksum_at) {
  const std::string where = "checkpoint " + Printable(path);
  if (!metadata) {
    throw CheckpointError(where + " has no " + kCheckpointMetadataKey + ", so it is not a " + contract::kCheckpointFormat +
                          " file (a plain safetensors file?); pass a checkpoint written by a "
                          "tflite-transfer runtime");
  }
  std::map<std::string, std::string> values;
  if (!metadata->is_object()) throw Corrupt(path, "__metadata__ must be an object of string values");
  for (const auto& [key, value] : metadata->members) {
    if (!value.is_string()) throw Corrupt(path, "__metadata__ must be an object of string values");
    values[key] = value.text;
  }
  auto format = values.find(contract::kFormatKey);
  if (format == values.end() || format->second != contract::kCheckpointFormat) {
    throw CheckpointError(where + " is not a " + contract::kCheckpointFormat + " file (__metadata__.format is " +
                          (format == values.end() ? "missing" : Printable(JsonQuote(format->second))) +
                          "); pass a checkpoint written by a tflite-transfer runtime");
  }
  auto version = values.find(contract::kFormatVersionKey);
  std::string expected = std::to_string(checksum_at ? contract::kCheckpointFormatVersion : contract::kCheckpointVersion1);
  if (version == values.end() || version->second != expected) {
    throw CheckpointError(where + " has format_version " +
                          (version == values.end() ? "missing" : Printable(JsonQuote(version->second))) +
                          (checksum_at ? " with" : " without") + " a checksum; this reader supports version " +
                          std::to_string(contract::kCheckpointFormatVersion) + " (checksummed) and, with "
                          "--allow_version_1, version " + std::to_string(contract::kCheckpointVersion1) +
                          " (a newer file? upgrade tflite-transfer)");
  }
  if (checksum_at && values[contract::kChecksumKey].size() != kDigits) {
    throw Corrupt(path, "the checksum field is not __metadata__.checksum");
  }
  auto fingerprint = values.find(contract::kModelFingerprintKey);
  if (fingerprint == values.end() || fingerprint->second.empty()) {
    throw Corrupt(path, "__metadata__ has no model_fingerprint");
  }
  return values;
}

// Sorted by offset, the entries must tile the data section exactly: no overlap, gap or tail.
void CheckTiling(const std::string& path, std::vector<Entry>& entries, uint64_t data_size) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t position = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin < position) {
      throw Corrupt(path, "tensors " + Quoted(previous->name) + " " + OffsetsText(previous->begin, previous->end) +
                          " and " + Quoted(entry.name) + " " + OffsetsText(entry.begin, entry.end) + " overlap");
    }
    if (entry.begin > position) {
      throw Corrupt(path, "bytes " + std::to_string(position) + ".." + std::to_string(entry.begin) +
                          " of the data section belong to no tensor (gap before " + Quoted(entry.name) + ")");
    }
    position = entry.end;
    previous = &entry;
  }
  if (position != data_size) {
    throw Corrupt(path, std::to_string(data_size - position) + " bytes of trailing data after the last tensor "
                        "(the tensors end at byte " + std::to_string(position) + " of " +
                        std::to_string(data_size) + ")");
  }
}

// The header parsed and checked against the file: metadata, and entries tiling the data section.
struct ParsedHeader {
  std::map<std::string, std::string> metadata;
  std::vector<Entry> entries;  // sorted by offset
};

ParsedHeader ParseHeader(const std::string& path, const std::string& header, std::optional<size_t> checksum_at,
                         uint64_t data_size) {
  if (!IsValidUtf8(header)) throw Corrupt(path, "the header is not UTF-8");
  Json parsed;
  try {
    parsed = ParseJson(header);
  } catch (const JsonError& error) {
    throw Corrupt(path, "the header is not valid JSON (" + Printable(error.what()) + ")");
  }
  if (!parsed.is_object()) throw Corrupt(path, std::string("the header is a JSON ") + parsed.KindName() + ", not an object");
  ParsedHeader result;
  result.metadata = ValidateMetadata(path, parsed.Find(kCheckpointMetadataKey), checksum_at);
  for (const auto& [name, entry] : parsed.members) {
    if (name != kCheckpointMetadataKey) result.entries.push_back(ValidateEntry(path, name, entry, data_size));
  }
  CheckTiling(path, result.entries, data_size);
  return result;
}

std::vector<DeclaredTensor> Declared(const std::vector<Entry>& entries) {
  std::vector<DeclaredTensor> declared;
  for (const Entry& entry : entries) declared.push_back({entry.name, entry.dtype, entry.shape});
  return declared;
}

Checkpoint ReadOpenFile(const ReadableFile& file, const std::string& path, const CheckpointReadOptions& options,
                        const CheckpointExpectation* expected) {
  const uint64_t file_size = file.size();
  if (file_size < kLengthFieldBytes) {
    throw Corrupt(path, "the file is " + std::to_string(file_size) + " bytes, too short for the " +
                        std::to_string(kLengthFieldBytes) + "-byte header length");
  }
  unsigned char length_field[kLengthFieldBytes];
  if (!file.ReadAt(0, length_field, kLengthFieldBytes)) {
    throw Corrupt(path, "the file ended early (was it truncated while being read?)");
  }
  uint64_t header_length = GetU64LittleEndian(length_field);
  if (header_length > contract::kMaxHeaderBytes) {
    throw Corrupt(path, "the header length field says " + std::to_string(header_length) + " bytes, more than the " +
                        std::to_string(contract::kMaxHeaderBytes) + "-byte limit");
  }
  if (header_length > file_size - kLengthFieldBytes) {
    throw Corrupt(path, "the header length field says " + std::to_string(header_length) + " bytes but only " +
                        std::to_string(file_size - kLengthFieldBytes) + " bytes follow it");
  }
  std::string header(static_cast<size_t>(header_length), '\0');
  if (!file.ReadAt(kLengthFieldBytes, header.data(), header.size())) {
    throw Corrupt(path, "the file ended early (was it truncated while being read?)");
  }
  std::optional<size_t> checksum_at = ChecksumOffset(header);
  if (!checksum_at && !options.allow_version_1) {
    throw CheckpointError("checkpoint " + Printable(path) + " has no checksum: it is format version 1 (or "
                          "damaged), which cannot be checked for corruption; to read it anyway pass "
                          "--allow_version_1 (allow_version_1=True in Python) and save it again to "
                          "convert it to version 2");
  }
  const uint64_t data_start = kLengthFieldBytes + header_length, data_size = file_size - data_start;
  if (expected) {
    std::optional<uint64_t> state_bytes = StateBytes(expected->state);
    if (!state_bytes || data_size != *state_bytes) {
      // It cannot hold this model's state, whatever its checksum says: never hash or read its
      // data (a valid 1 GiB file took 43 s and 1 GB of memory); the header alone says why.
      ParsedHeader parsed = ParseHeader(path, header, checksum_at, data_size);
      CheckDeclaredTensors(parsed.metadata[contract::kModelFingerprintKey], Declared(parsed.entries), *expected, path);
      throw Corrupt(path, "its data section is " + std::to_string(data_size) + " bytes, not the model's " +
                          (state_bytes ? std::to_string(*state_bytes) : std::string("(overflowing)")));
    }
  }
  if (checksum_at) {
    std::string stored = header.substr(*checksum_at, kDigits);
    std::string computed = FileChecksum(file, path, length_field, header, *checksum_at);
    if (computed != stored) {
      throw Corrupt(path, "its checksum does not match its content (stored " + stored.substr(0, 12) +
                          "\xE2\x80\xA6, computed " + computed.substr(0, 12) + "\xE2\x80\xA6): the file was damaged");
    }
  }
  ParsedHeader parsed = ParseHeader(path, header, checksum_at, data_size);
  Checkpoint checkpoint;
  checkpoint.metadata = std::move(parsed.metadata);
  checkpoint.model_fingerprint = checkpoint.metadata[contract::kModelFingerprintKey];
  checkpoint.format_version = checksum_at ? contract::kCheckpointFormatVersion : contract::kCheckpointVersion1;
  if (expected) CheckDeclaredTensors(checkpoint.model_fingerprint, Declared(parsed.entries), *expected, path);
  // The tensors are read in a second pass; hashing them again proves they are the bytes the
  // checksum covered (the file could have been rewritten in place in between).
  Sha256 again;
  if (checksum_at) {
    again.Update(length_field, kLengthFieldBytes);
    again.Update(std::string_view(header).substr(0, *checksum_at));
    again.Update(std::string(kDigits, '0'));
    again.Update(std::string_view(header).substr(*checksum_at + kDigits));
  }
  for (Entry& entry : parsed.entries) {  // sorted, contiguous, bounded by the file: safe to allocate
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = std::move(entry.shape);
    tensor.bytes.resize(static_cast<size_t>(entry.end - entry.begin));
    if (!file.ReadAt(data_start + entry.begin, tensor.bytes.data(), tensor.bytes.size())) {
      throw Corrupt(path, "the file ended inside tensor " + Quoted(entry.name) + " (was it truncated while being read?)");
    }
    again.Update(tensor.bytes.data(), tensor.bytes.size());
    checkpoint.tensors.emplace(entry.name, std::move(tensor));
  }
  if (checksum_at && again.HexDigest() != header.substr(*checksum_at, kDigits)) {
    throw Corrupt(path, "the file changed while being read; read it again once no one writes it");
  }
  return checkpoint;
}

Checkpoint ReadChecked(const std::string& path, const CheckpointReadOptions& options,
                       const CheckpointExpectation* expected) {
  try {
    ReadableFile file(path, "checkpoint");
    return ReadOpenFile(file, path, options, expected);
  } catch (const FileError& error) {
    throw CheckpointError(std::string(error.what()) +
                          (std::string(error.what()).find("does not exist") != std::string::npos
                               ? ", or start training from the model's initial weights" : ""));
  }
}

}  // namespace

Checkpoint ReadCheckpoint(const std::string& path, const CheckpointReadOptions& options) {
  return ReadChecked(path, options, nullptr);
}

Checkpoint ReadCheckpointFor(const std::string& path, const CheckpointExpectation& expected,
                             const CheckpointReadOptions& options) {
  return ReadChecked(path, options, &expected);
}

}  // namespace tflite_transfer
