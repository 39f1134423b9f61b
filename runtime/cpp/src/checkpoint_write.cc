// Writing checkpoints: the header exactly as the Python writer builds it, the checksum over
// the whole file, then an atomic replace (files.h).
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
using contract::kHeaderAlignment;
const std::string kChecksumPlaceholder(contract::kDigestHexDigits, '0');

void PutU64LittleEndian(std::string& out, uint64_t value) {
  for (int byte = 0; byte < 8; ++byte) out += static_cast<char>((value >> (8 * byte)) & 0xFF);
}

bool IsHex(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

void CheckTensorName(const std::string& name) {
  if (name.empty()) throw InvalidInputError("tensor names must be non-empty strings");
  if (name == kCheckpointMetadataKey) {
    throw InvalidInputError("tensor name " + Quoted(name) + " is reserved for the checkpoint metadata");
  }
  if (!IsValidUtf8(name)) throw InvalidInputError("tensor name " + Quoted(name) + " is not valid UTF-8");
}

// Key order is part of the format (Python writes the same bytes): format, format_version,
// model_fingerprint, checksum (64 '0' until stamped), then the caller's extras sorted by key.
std::vector<std::pair<std::string, std::string>> BuildMetadata(
    const std::string& model_fingerprint, const std::map<std::string, std::string>& extra_metadata) {
  if (!IsHex(model_fingerprint)) {
    throw InvalidInputError("model_fingerprint must be a non-empty hex string, got " + Quoted(model_fingerprint));
  }
  std::vector<std::pair<std::string, std::string>> metadata = {
      {contract::kFormatKey, contract::kCheckpointFormat},
      {contract::kFormatVersionKey, std::to_string(contract::kCheckpointFormatVersion)},
      {contract::kModelFingerprintKey, model_fingerprint},
      {contract::kChecksumKey, kChecksumPlaceholder}};
  for (const auto& [key, value] : extra_metadata) {  // std::map: sorted by bytes, like Python
    for (const auto& [reserved, unused] : metadata) {
      if (key == reserved) {
        throw InvalidInputError("extra_metadata key " + Quoted(key) + " is reserved for the checkpoint format");
      }
    }
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      throw InvalidInputError("extra_metadata " + Quoted(key) + " is not valid UTF-8");
    }
    metadata.emplace_back(key, value);
  }
  return metadata;
}

// The header exactly as Python's json.dumps(header, ensure_ascii=False, separators=(",", ":"))
// writes it, padded with spaces to a multiple of 8; `order` receives the tensors in file order.
std::string BuildHeader(const TensorMap& tensors,
                        const std::vector<std::pair<std::string, std::string>>& metadata,
                        std::vector<const Tensor*>& order) {
  std::vector<std::pair<const std::string*, const Tensor*>> entries;
  for (const auto& [name, tensor] : tensors) {
    CheckTensorName(name);
    std::optional<int64_t> count = NumElements(tensor.shape);
    if (!count || tensor.shape.size() > contract::kMaxDimensions ||
        tensor.bytes.size() != static_cast<uint64_t>(*count) * ItemSize(tensor.dtype)) {
      throw InvalidInputError("tensor " + Quoted(name) + " (" + tensor.Describe() + ") holds " +
                              std::to_string(tensor.bytes.size()) + " bytes, not what its shape needs");
    }
    entries.emplace_back(&name, &tensor);
  }
  // Widest items first, then by name (the safetensors reference writer's order): every tensor
  // then starts at a multiple of its item size, so a reader can mmap the file and use it in place.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return ItemSize(a.second->dtype) > ItemSize(b.second->dtype);
  });
  std::string header = "{" + JsonQuote(kCheckpointMetadataKey) + ":{";
  for (size_t index = 0; index < metadata.size(); ++index) {
    if (index) header += ",";
    header += JsonQuote(metadata[index].first) + ":" + JsonQuote(metadata[index].second);
  }
  header += "}";
  uint64_t offset = 0;
  for (const auto& [name, tensor] : entries) {
    header += "," + JsonQuote(*name) + ":{\"dtype\":\"" + SafetensorsCode(tensor->dtype) + "\",\"shape\":[";
    for (size_t axis = 0; axis < tensor->shape.size(); ++axis) {
      if (axis) header += ",";
      header += std::to_string(tensor->shape[axis]);
    }
    uint64_t end = offset + tensor->bytes.size();
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
    order.push_back(tensor);
  }
  header += "}";
  header.append((kHeaderAlignment - header.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
  if (header.size() > contract::kMaxHeaderBytes) {
    throw InvalidInputError("checkpoint header would be " + std::to_string(header.size()) + " bytes (limit " +
                            std::to_string(contract::kMaxHeaderBytes) + "); too many tensors or names too long");
  }
  return header;
}

}  // namespace

void WriteCheckpoint(const std::string& path, const TensorMap& tensors,
                     const std::string& model_fingerprint,
                     const std::map<std::string, std::string>& extra_metadata) {
  std::vector<const Tensor*> order;
  std::string header = BuildHeader(tensors, BuildMetadata(model_fingerprint, extra_metadata), order);
  std::string length_field;
  PutU64LittleEndian(length_field, header.size());
  // The checksum covers the file with its own digits as '0': exactly the bytes built so far.
  std::optional<size_t> checksum_at = ChecksumOffset(header);
  if (!checksum_at) {  // only reachable if an extra value could mimic the marker; it cannot
    throw InvalidInputError("checkpoint header has no unique checksum field");
  }
  Sha256 checksum;
  checksum.Update(length_field);
  checksum.Update(header);
  for (const Tensor* tensor : order) checksum.Update(tensor->bytes.data(), tensor->bytes.size());
  header.replace(*checksum_at, contract::kDigestHexDigits, checksum.HexDigest());

  try {
    WriteFileAtomically(path, [&](int descriptor) {
      WriteAll(descriptor, length_field.data(), length_field.size());
      WriteAll(descriptor, header.data(), header.size());
      for (const Tensor* tensor : order) WriteAll(descriptor, tensor->bytes.data(), tensor->bytes.size());
    });
  } catch (const NotRegularFileError& error) {
    throw CheckpointError("could not write checkpoint " + Printable(path) + ": " + error.what() +
                          "; pass the path of a regular file (nothing was written)");
  } catch (const FileError& error) {
    throw CheckpointError("could not write checkpoint " + Printable(path) + ": " + error.what() +
                          "; the previous file (if any) is unchanged - check that the directory "
                          "exists, is writable and has free space");
  }
}

}  // namespace tflite_transfer
