// Reading a compiled model file before the TFLite library sees it: a regular file only, its
// model digest checked (runtime/SPEC.md#model-digest), its metadata parsed, and its structure
// checked when no digest vouches for it. LiteRT aborts the whole process on some corrupt
// files, so a damaged file must be refused here, not there.
#ifndef TFLITE_TRANSFER_MODEL_FILE_H_
#define TFLITE_TRANSFER_MODEL_FILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model_metadata.h"

namespace tflite_transfer {

struct ModelFileOptions {
  // Skips the digest check, for apps that verified the file elsewhere (a signed download).
  bool verify_digest = true;
};

struct ModelFile {
  std::vector<uint8_t> bytes;
  ModelMetadata metadata;
  bool digest_checked = false;  // false only for version 1 files or with verify_digest off (then
                                // the structure was checked instead: CheckModelStructure)
};

// Offset of the 64 hex digits of the one `"model_digest":"<64 lowercase hex>"` in the file, or
// nullopt unless there is exactly one.
std::optional<size_t> FindModelDigest(const std::vector<uint8_t>& bytes);

// sha256 of the whole file with the 64 bytes at `digest_at` read as ASCII '0'.
std::string ComputeModelDigest(const std::vector<uint8_t>& bytes, size_t digest_at);

// Reads and checks `path`; InvalidInputError (missing, not regular, corrupt structure),
// VerificationError (the digest does not match, or a contract version 2 file lacks its single
// digest field) or UnsupportedModelError (not a tflite-transfer model, unusable metadata).
ModelFile ReadModelFile(const std::string& path, const ModelFileOptions& options = {});

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_FILE_H_
