// Training checkpoints in exactly the Python runtime's format (runtime/checkpoint.py;
// runtime/SPEC.md#checkpoint-file-format): safetensors with required __metadata__, format version 2 with a
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

#include "contract.h"
#include "model_metadata.h"
#include "tensor.h"

namespace tflite_transfer {

using TensorMap = std::map<std::string, Tensor>;  // name -> value, sorted by UTF-8 bytes

struct Checkpoint {
  TensorMap tensors;
  std::string model_fingerprint;
  int format_version = contract::kCheckpointFormatVersion;
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
// length <= kMaxHeaderBytes and <= size - 8; header; checksum over the file streamed in 1 MiB
// chunks; JSON (linear time, duplicate keys refused); entries against the file size; tensor
// data. Nothing is allocated from a declared size before it is checked against the file.
// Every problem is a CheckpointError naming the file.
Checkpoint ReadCheckpoint(const std::string& path, const CheckpointReadOptions& options = {});

// What a checkpoint must hold to be restored into a model.
struct CheckpointExpectation {
  std::string model_fingerprint;
  std::vector<StateSpec> state;
};

// ReadCheckpoint for restoring into the model described, which bounds what is read: a file
// whose data section is not exactly the model's state size is refused after its header alone
// (the header is parsed to say why: another model's fingerprint, a tensor's shape, a
// truncation), so a huge file is never hashed or loaded; a file of the right size is
// checksummed first (a damaged header is reported as damage), then checked against the model
// (fingerprint, names, shapes, dtypes) before any tensor data is read. The result fits the
// model (CheckCompatible holds); values are not checked for meaning (CheckState does that).
Checkpoint ReadCheckpointFor(const std::string& path, const CheckpointExpectation& expected,
                             const CheckpointReadOptions& options = {});

// One tensor as a checkpoint header declares it.
struct DeclaredTensor {
  std::string name;
  DType dtype;
  Shape shape;
};

// Throws CheckpointError unless the declared tensors fit the model: same fingerprint, exactly
// the state names, and every shape and dtype.
void CheckDeclaredTensors(const std::string& fingerprint, const std::vector<DeclaredTensor>& tensors,
                          const CheckpointExpectation& expected, const std::string& path);

// The same for a checkpoint already read.
void CheckCompatible(const Checkpoint& checkpoint, const std::vector<StateSpec>& expected,
                     const std::string& model_fingerprint, const std::string& path);

// Offset in `header` of the checksum's 64 hex digits: the single `"checksum":"<64 lowercase
// hex>"` (inside a JSON string a quote is escaped, so only the metadata key can match), or
// nullopt unless there is exactly one.
std::optional<size_t> ChecksumOffset(std::string_view header);

// Bytes of a state's data section (the sum over its tensors), or nullopt if it overflows.
std::optional<uint64_t> StateBytes(const std::vector<StateSpec>& state);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_CHECKPOINT_H_
