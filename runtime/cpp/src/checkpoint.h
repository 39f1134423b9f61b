// Training checkpoints in exactly the Python runtime's format (runtime/checkpoint.py; BUILD.md,
// "Checkpoint file format"): safetensors with required __metadata__, format version 2 with a
// checksum over the whole file, written atomically, validated completely on read. The same
// state and metadata give a byte-identical file in both languages.
#ifndef TFLITE_TRANSFER_CHECKPOINT_H_
#define TFLITE_TRANSFER_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model_metadata.h"
#include "tensor.h"

namespace tflite_transfer {

inline constexpr char kCheckpointFormat[] = "tflite-transfer-checkpoint";
inline constexpr int kCheckpointFormatVersion = 2;  // what the writer writes
inline constexpr int kCheckpointVersion1 = 1;       // no checksum; read only on request
inline constexpr char kChecksumKey[] = "checksum";
// The safetensors reference reader refuses larger headers too: a bigger length field means a
// corrupt file, and trusting it would allocate gigabytes before noticing.
inline constexpr uint64_t kMaxHeaderBytes = 100000000;
inline constexpr size_t kMaxDimensions = 32;

using TensorMap = std::map<std::string, Tensor>;  // name -> value, sorted by UTF-8 bytes

struct Checkpoint {
  TensorMap tensors;
  std::string model_fingerprint;
  int format_version = kCheckpointFormatVersion;
  std::map<std::string, std::string> metadata;  // the file's whole __metadata__ (with the checksum)
};

struct CheckpointReadOptions {
  // Version 1 files carry no checksum, so corruption in them cannot be detected; they are
  // refused unless the caller accepts that (the demo's --allow_version_1).
  bool allow_version_1 = false;
};

// Validates everything and builds the header in memory, computes the checksum, then writes the
// file atomically (files.h: temp file + rename, symlinks written through, umask respected).
// `extra_metadata` keys must not collide with the format's own.
void WriteCheckpoint(const std::string& path, const TensorMap& tensors,
                     const std::string& model_fingerprint,
                     const std::map<std::string, std::string>& extra_metadata = {});

// Reads and fully validates a checkpoint, in this order: regular file; size >= 8; header
// length <= 100 MB and <= size - 8; header; checksum over the file streamed in 1 MiB chunks;
// JSON (linear time, duplicate keys refused); entries against the file size; tensor data.
// Nothing is allocated from a declared size before it is checked against the file. Every
// problem is a CheckpointError naming the file.
Checkpoint ReadCheckpoint(const std::string& path, const CheckpointReadOptions& options = {});

// Throws CheckpointError unless `checkpoint` fits the model: same fingerprint, exactly the
// state names, and every shape and dtype.
void CheckCompatible(const Checkpoint& checkpoint, const std::vector<StateSpec>& expected,
                     const std::string& model_fingerprint, const std::string& path);

// Offset in `header` of the checksum's 64 hex digits: the single `"checksum":"<64 lowercase
// hex>"` (inside a JSON string a quote is escaped, so only the metadata key can match), or
// nullopt unless there is exactly one.
std::optional<size_t> ChecksumOffset(std::string_view header);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_CHECKPOINT_H_
