#include "checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <system_error>

#include "errors.h"
#include "json.h"

namespace tflite_transfer {
namespace {

constexpr char kMetadataKey[] = "__metadata__";
constexpr size_t kHeaderAlignment = 8;

void PutU64LittleEndian(std::string& out, uint64_t value) {
  for (int byte = 0; byte < 8; ++byte) out += static_cast<char>((value >> (8 * byte)) & 0xFF);
}

uint64_t GetU64LittleEndian(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int byte = 7; byte >= 0; --byte) value = (value << 8) | bytes[byte];
  return value;
}

// --- writing --------------------------------------------------------------------------------

bool IsHex(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

void CheckTensorName(const std::string& name) {
  if (name.empty()) throw InvalidInputError("tensor names must be non-empty strings");
  if (name == kMetadataKey) {
    throw InvalidInputError("tensor name '__metadata__' is reserved for the checkpoint metadata");
  }
  if (!IsValidUtf8(name)) throw InvalidInputError("tensor name '" + name + "' is not valid UTF-8");
}

// The header exactly as Python's json.dumps(header, ensure_ascii=False, separators=(",", ":"))
// writes it, padded with spaces to a multiple of 8; `order` receives the tensors in file order.
std::string BuildHeader(const TensorMap& tensors, const std::string& model_fingerprint,
                        const std::map<std::string, std::string>& extra_metadata,
                        std::vector<const Tensor*>& order) {
  if (!IsHex(model_fingerprint)) {
    throw InvalidInputError("model_fingerprint must be a non-empty hex string, got '" +
                            model_fingerprint + "'");
  }
  std::vector<std::pair<std::string, std::string>> metadata = {
      {"format", kCheckpointFormat},
      {"format_version", std::to_string(kCheckpointFormatVersion)},
      {"model_fingerprint", model_fingerprint}};
  for (const auto& [key, value] : extra_metadata) {  // std::map: sorted by bytes, like Python
    if (key == "format" || key == "format_version" || key == "model_fingerprint") {
      throw InvalidInputError("extra_metadata key '" + key + "' is reserved for the checkpoint format");
    }
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      throw InvalidInputError("extra_metadata '" + key + "' is not valid UTF-8");
    }
    metadata.emplace_back(key, value);
  }
  std::vector<std::pair<const std::string*, const Tensor*>> entries;
  for (const auto& [name, tensor] : tensors) {
    CheckTensorName(name);
    std::optional<int64_t> count = NumElements(tensor.shape);
    if (!count || tensor.shape.size() > kMaxDimensions ||
        tensor.bytes.size() != static_cast<uint64_t>(*count) * ItemSize(tensor.dtype)) {
      throw InvalidInputError("tensor '" + name + "' (" + tensor.Describe() + ") holds " +
                              std::to_string(tensor.bytes.size()) + " bytes, not what its shape needs");
    }
    entries.emplace_back(&name, &tensor);
  }
  // Widest items first, then by name (the safetensors reference writer's order): every tensor
  // then starts at a multiple of its item size, so a reader can mmap the file and use it in place.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return ItemSize(a.second->dtype) > ItemSize(b.second->dtype);
  });
  std::string header = "{\"__metadata__\":{";
  for (size_t index = 0; index < metadata.size(); ++index) {
    if (index) header += ",";
    header += JsonQuote(metadata[index].first) + ":" + JsonQuote(metadata[index].second);
  }
  header += "}";
  uint64_t offset = 0;
  for (const auto& [name, tensor] : entries) {
    header += "," + JsonQuote(*name) + ":{\"dtype\":\"" + SafetensorsCode(tensor->dtype) +
              "\",\"shape\":[";
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
  if (header.size() > kMaxHeaderBytes) {
    throw InvalidInputError("checkpoint header would be " + std::to_string(header.size()) +
                            " bytes (limit 100000000); too many tensors or names too long");
  }
  return header;
}

void WriteAll(int descriptor, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t written = ::write(descriptor, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "write");
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Persists the rename itself (best effort: not every platform can open a directory).
void FsyncDirectory(const std::string& directory) {
  int descriptor = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY);
  if (descriptor < 0) return;
  ::fsync(descriptor);
  ::close(descriptor);
}

// --- reading --------------------------------------------------------------------------------

CheckpointError Corrupt(const std::string& path, const std::string& problem) {
  return CheckpointError("checkpoint " + path + " is corrupt or incomplete: " + problem +
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

Entry ValidateEntry(const std::string& path, const std::string& name, const Json& entry,
                    uint64_t data_size) {
  if (name.empty()) throw Corrupt(path, "a tensor has an empty name");
  if (!entry.is_object() || entry.members.size() != 3 || !entry.Find("dtype") ||
      !entry.Find("shape") || !entry.Find("data_offsets")) {
    throw Corrupt(path, "tensor '" + name + "' must be an object with exactly the keys "
                        "['data_offsets', 'dtype', 'shape']");
  }
  const Json& code = *entry.Find("dtype");
  std::optional<DType> dtype = code.is_string() ? DTypeFromSafetensorsCode(code.text) : std::nullopt;
  if (!dtype) {
    throw Corrupt(path, "tensor '" + name + "' has unsupported dtype " +
                        (code.is_string() ? JsonQuote(code.text) : code.KindName()) +
                        "; this reader supports F64, F32, F16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL");
  }
  const Json& shape = *entry.Find("shape");
  Entry result{name, *dtype, {}, 0, 0};
  if (!shape.is_array() || shape.items.size() > kMaxDimensions) {
    throw Corrupt(path, "tensor '" + name + "' has a bad shape; expected a list of at most 32 "
                        "non-negative integers");
  }
  // Element count times item size, refusing anything that overflows 64 bits.
  unsigned __int128 expected_bytes = ItemSize(*dtype);
  for (const Json& size : shape.items) {
    std::optional<uint64_t> value = size.AsUInt64();
    if (!value || *value > static_cast<uint64_t>(INT64_MAX)) {
      throw Corrupt(path, "tensor '" + name + "' has a bad shape; expected a list of at most 32 "
                          "non-negative integers");
    }
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
    throw Corrupt(path, "tensor '" + name + "' has bad data_offsets; expected [begin, end] as "
                        "non-negative integers");
  }
  if (!(*begin <= *end && *end <= data_size)) {
    throw Corrupt(path, "tensor '" + name + "' has data_offsets " + OffsetsText(*begin, *end) +
                        " outside the " + std::to_string(data_size) +
                        "-byte data section (truncated file?)");
  }
  if (expected_bytes != *end - *begin) {
    throw Corrupt(path, "tensor '" + name + "' is " + ShapeString(result.shape) + " " +
                        code.text + " but its data_offsets " + OffsetsText(*begin, *end) +
                        " span " + std::to_string(*end - *begin) + " bytes");
  }
  result.begin = *begin;
  result.end = *end;
  return result;
}

std::map<std::string, std::string> ValidateMetadata(const std::string& path, const Json* metadata) {
  if (!metadata) {
    throw CheckpointError("checkpoint " + path + " has no __metadata__, so it is not a " +
                          kCheckpointFormat + " file (a plain safetensors file?); pass a "
                          "checkpoint written by a tflite-transfer runtime");
  }
  std::map<std::string, std::string> values;
  if (!metadata->is_object()) throw Corrupt(path, "__metadata__ must be an object of string values");
  for (const auto& [key, value] : metadata->members) {
    if (!value.is_string()) throw Corrupt(path, "__metadata__ must be an object of string values");
    values[key] = value.text;
  }
  auto format = values.find("format");
  if (format == values.end() || format->second != kCheckpointFormat) {
    throw CheckpointError("checkpoint " + path + " is not a " + kCheckpointFormat +
                          " file (__metadata__.format is " +
                          (format == values.end() ? "missing" : JsonQuote(format->second)) +
                          "); pass a checkpoint written by a tflite-transfer runtime");
  }
  auto version = values.find("format_version");
  if (version == values.end() || version->second != std::to_string(kCheckpointFormatVersion)) {
    throw CheckpointError("checkpoint " + path + " has format_version " +
                          (version == values.end() ? "missing" : JsonQuote(version->second)) +
                          "; this reader supports version 1 only (a newer file? upgrade tflite-transfer)");
  }
  auto fingerprint = values.find("model_fingerprint");
  if (fingerprint == values.end() || fingerprint->second.empty()) {
    throw Corrupt(path, "__metadata__ has no model_fingerprint");
  }
  return values;
}

std::string Abbreviate(const std::string& fingerprint) {
  return fingerprint.size() <= 12 ? fingerprint : fingerprint.substr(0, 12) + "\xE2\x80\xA6";
}

std::string ListNames(const std::vector<std::string>& names) {
  std::string text = std::to_string(names.size()) + (names.size() == 1 ? " tensor: " : " tensors: ");
  for (size_t index = 0; index < names.size() && index < 10; ++index) {
    if (index) text += ", ";
    text += "'" + names[index] + "'";
  }
  if (names.size() > 10) text += " and " + std::to_string(names.size() - 10) + " more";
  return text;
}

}  // namespace

void WriteCheckpoint(const std::string& path, const TensorMap& tensors,
                     const std::string& model_fingerprint,
                     const std::map<std::string, std::string>& extra_metadata) {
  std::vector<const Tensor*> order;
  std::string header = BuildHeader(tensors, model_fingerprint, extra_metadata, order);
  std::string length_field;
  PutU64LittleEndian(length_field, header.size());

  // The temporary file must live in the target's directory: rename(2) is atomic only within
  // one filesystem, and a temp file elsewhere would turn it into copy + delete.
  std::string directory = DirectoryOf(path);
  std::string temp_path = directory + "/." + BaseNameOf(path) + ".XXXXXX.tmp";
  int descriptor = ::mkstemps(temp_path.data(), 4);
  if (descriptor < 0) {
    throw CheckpointError("could not write checkpoint " + path + ": " + std::strerror(errno) +
                          "; the previous file (if any) is unchanged - check that the directory "
                          "exists, is writable and has free space");
  }
  try {
    WriteAll(descriptor, length_field.data(), length_field.size());
    WriteAll(descriptor, header.data(), header.size());
    for (const Tensor* tensor : order) WriteAll(descriptor, tensor->bytes.data(), tensor->bytes.size());
    // Without fsync, a power cut after the rename can leave the new name pointing at a file
    // whose data never reached the disk (zero-length or garbage on ext4/f2fs).
    if (::fsync(descriptor) != 0) throw std::system_error(errno, std::generic_category(), "fsync");
    struct stat existing;
    if (::stat(path.c_str(), &existing) == 0) {
      ::fchmod(descriptor, existing.st_mode & 07777);  // an overwritten file keeps its mode
    }
    if (::close(descriptor) != 0) {
      descriptor = -1;
      throw std::system_error(errno, std::generic_category(), "close");
    }
    descriptor = -1;
    if (::rename(temp_path.c_str(), path.c_str()) != 0) {
      throw std::system_error(errno, std::generic_category(), "rename");
    }
  } catch (const std::system_error& error) {
    if (descriptor >= 0) ::close(descriptor);
    ::unlink(temp_path.c_str());
    throw CheckpointError("could not write checkpoint " + path + ": " + error.what() +
                          "; the previous file (if any) is unchanged - check that the directory "
                          "exists, is writable and has free space");
  }
  FsyncDirectory(directory);
}

Checkpoint ReadCheckpoint(const std::string& path) {
  struct stat status;
  if (::stat(path.c_str(), &status) != 0 && errno == ENOENT) {
    throw CheckpointError("checkpoint " + path + " does not exist; check the path, or start "
                          "training from the model's initial weights");
  }
  std::ifstream file(path, std::ios::binary);
  if (!file || S_ISDIR(status.st_mode)) {
    throw CheckpointError("could not read checkpoint " + path + ": " +
                          (S_ISDIR(status.st_mode) ? "it is a directory" : std::strerror(errno)));
  }
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw CheckpointError("could not read checkpoint " + path + ": read error");
  uint64_t file_size = bytes.size();
  if (file_size < 8) {
    throw Corrupt(path, "the file is " + std::to_string(file_size) +
                        " bytes, too short for the 8-byte header length");
  }
  uint64_t header_length = GetU64LittleEndian(bytes.data());
  if (header_length > kMaxHeaderBytes) {
    throw Corrupt(path, "the header length field says " + std::to_string(header_length) +
                        " bytes, more than the 100000000-byte limit");
  }
  if (header_length > file_size - 8) {
    throw Corrupt(path, "the header length field says " + std::to_string(header_length) +
                        " bytes but only " + std::to_string(file_size - 8) + " bytes follow it");
  }
  std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_length);
  if (!IsValidUtf8(header_text)) throw Corrupt(path, "the header is not UTF-8");
  Json header;
  try {
    header = ParseJson(header_text);
  } catch (const JsonError& error) {
    throw Corrupt(path, std::string("the header is not valid JSON (") + error.what() + ")");
  }
  if (!header.is_object()) {
    throw Corrupt(path, std::string("the header is a JSON ") + header.KindName() + ", not an object");
  }
  Checkpoint checkpoint;
  checkpoint.metadata = ValidateMetadata(path, header.Find(kMetadataKey));
  checkpoint.model_fingerprint = checkpoint.metadata["model_fingerprint"];

  uint64_t data_size = file_size - 8 - header_length;
  std::vector<Entry> entries;
  for (const auto& [name, entry] : header.members) {
    if (name != kMetadataKey) entries.push_back(ValidateEntry(path, name, entry, data_size));
  }
  // Any order of tensors is valid, but together they must tile the data section exactly.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t position = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin < position) {
      throw Corrupt(path, "tensors '" + previous->name + "' " + OffsetsText(previous->begin, previous->end) +
                          " and '" + entry.name + "' " + OffsetsText(entry.begin, entry.end) + " overlap");
    }
    if (entry.begin > position) {
      throw Corrupt(path, "bytes " + std::to_string(position) + ".." + std::to_string(entry.begin) +
                          " of the data section belong to no tensor (gap before '" + entry.name + "')");
    }
    position = entry.end;
    previous = &entry;
  }
  if (position != data_size) {
    throw Corrupt(path, std::to_string(data_size - position) +
                        " bytes of trailing data after the last tensor (the tensors end at byte " +
                        std::to_string(position) + " of " + std::to_string(data_size) + ")");
  }
  const unsigned char* data = bytes.data() + 8 + header_length;
  for (Entry& entry : entries) {
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = std::move(entry.shape);
    tensor.bytes.assign(data + entry.begin, data + entry.end);
    checkpoint.tensors.emplace(entry.name, std::move(tensor));
  }
  return checkpoint;
}

void CheckCompatible(const Checkpoint& checkpoint, const std::vector<StateSpec>& expected,
                     const std::string& model_fingerprint, const std::string& path) {
  std::string where = "checkpoint " + path;
  if (checkpoint.model_fingerprint != model_fingerprint) {
    throw CheckpointError(where + " was written by another model (fingerprint " +
                          Abbreviate(checkpoint.model_fingerprint) + " vs " +
                          Abbreviate(model_fingerprint) + "); restore it into the model that "
                          "saved it, or start from this model's initial weights");
  }
  std::vector<std::string> missing, unexpected;
  std::map<std::string, const StateSpec*> by_name;
  for (const StateSpec& spec : expected) {
    by_name[spec.name] = &spec;
    if (!checkpoint.tensors.count(spec.name)) missing.push_back(spec.name);
  }
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (!by_name.count(name)) unexpected.push_back(name);
  }
  std::sort(missing.begin(), missing.end());
  if (!missing.empty() || !unexpected.empty()) {
    std::string problems;
    if (!missing.empty()) problems += "missing " + ListNames(missing);
    if (!unexpected.empty()) problems += (problems.empty() ? "" : "; ") + ("unexpected " + ListNames(unexpected));
    throw CheckpointError(where + " does not hold this model's variables: " + problems);
  }
  std::string mismatches;
  for (const auto& [name, spec] : by_name) {
    const Tensor& stored = checkpoint.tensors.at(name);
    if (stored.shape != spec->shape || stored.dtype != spec->dtype) {
      if (!mismatches.empty()) mismatches += "; ";
      mismatches += "'" + name + "' is " + ShapeString(stored.shape) + " " + NumpyName(stored.dtype) +
                    " in the checkpoint but " + ShapeString(spec->shape) + " " +
                    NumpyName(spec->dtype) + " in the model";
    }
  }
  if (!mismatches.empty()) throw CheckpointError(where + " does not fit the model: " + mismatches);
}

}  // namespace tflite_transfer
