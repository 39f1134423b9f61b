// Training checkpoints in exactly the Python runtime's format (runtime/checkpoint.py; BUILD.md,
// "Checkpoint file format"): safetensors with required __metadata__, written atomically,
// validated completely on read. The same state gives a byte-identical file in both languages.
#ifndef TFLITE_TRANSFER_CHECKPOINT_H_
#define TFLITE_TRANSFER_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model_metadata.h"
#include "tensor.h"

namespace tflite_transfer {

inline constexpr char kCheckpointFormat[] = "tflite-transfer-checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;
// The safetensors reference reader refuses larger headers too: a bigger length field means a
// corrupt file, and trusting it would allocate gigabytes before noticing.
inline constexpr uint64_t kMaxHeaderBytes = 100000000;
inline constexpr size_t kMaxDimensions = 32;

using TensorMap = std::map<std::string, Tensor>;  // name -> value, sorted by UTF-8 bytes

struct Checkpoint {
  TensorMap tensors;
  std::string model_fingerprint;
  std::map<std::string, std::string> metadata;  // the file's whole __metadata__
};

// Validates everything and builds the header in memory, then writes a temporary file in the
// target's directory, fsyncs it and renames it over `path`: readers see the old file or the
// new one, never a mix. `extra_metadata` keys must not collide with the format's own.
void WriteCheckpoint(const std::string& path, const TensorMap& tensors,
                     const std::string& model_fingerprint,
                     const std::map<std::string, std::string>& extra_metadata = {});

// Reads and fully validates a checkpoint; every problem is a CheckpointError naming the file.
Checkpoint ReadCheckpoint(const std::string& path);

// Throws CheckpointError unless `checkpoint` fits the model: same fingerprint, exactly the
// state names, and every shape and dtype.
void CheckCompatible(const Checkpoint& checkpoint, const std::vector<StateSpec>& expected,
                     const std::string& model_fingerprint, const std::string& path);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_CHECKPOINT_H_
