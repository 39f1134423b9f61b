#include "model_file.h"

#include <cstring>

#include "contract.h"
#include "errors.h"
#include "files.h"
#include "model_flatbuffer.h"
#include "sha256.h"
#include "text.h"

namespace tflite_transfer {
namespace {

constexpr size_t kDigits = contract::kDigestHexDigits;

bool IsLowerHex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

std::optional<size_t> FindModelDigest(const std::vector<uint8_t>& bytes) {
  const size_t marker_size = std::strlen(contract::kDigestMarker);
  std::optional<size_t> found;
  const uint8_t* begin = bytes.data();
  const uint8_t* end = begin + bytes.size();
  for (const uint8_t* at = begin; at < end;) {
    const void* hit = ::memmem(at, static_cast<size_t>(end - at), contract::kDigestMarker, marker_size);
    if (!hit) break;
    size_t digits = static_cast<size_t>(static_cast<const uint8_t*>(hit) - begin) + marker_size;
    at = static_cast<const uint8_t*>(hit) + 1;
    if (digits + kDigits + 1 > bytes.size() || bytes[digits + kDigits] != '"') continue;
    bool hex = true;
    for (size_t index = digits; index < digits + kDigits && hex; ++index) hex = IsLowerHex(bytes[index]);
    if (!hex) continue;
    if (found) return std::nullopt;  // two candidates: refuse rather than guess
    found = digits;
  }
  return found;
}

std::string ComputeModelDigest(const std::vector<uint8_t>& bytes, size_t digest_at) {
  Sha256 digest;
  digest.Update(bytes.data(), digest_at);
  digest.Update(std::string(kDigits, '0'));
  digest.Update(bytes.data() + digest_at + kDigits, bytes.size() - digest_at - kDigits);
  return digest.HexDigest();
}

ModelFile ReadModelFile(const std::string& path, const ModelFileOptions& options) {
  ModelFile model;
  try {
    model.bytes = ReadableFile(path, "model file").ReadAll();
  } catch (const FileError& error) {
    throw InvalidInputError(error.what());
  }
  std::optional<size_t> digest_at = FindModelDigest(model.bytes);
  if (options.verify_digest && digest_at) {
    std::string stored(reinterpret_cast<const char*>(model.bytes.data() + *digest_at), kDigits);
    std::string computed = ComputeModelDigest(model.bytes, *digest_at);
    if (computed != stored) {
      throw VerificationError("model file " + Printable(path) + " is damaged: its model_digest does not match its "
                              "content (stored " + stored.substr(0, 12) + "\xE2\x80\xA6, computed " +
                              computed.substr(0, 12) + "\xE2\x80\xA6); copy or compile it again");
    }
    model.digest_checked = true;
  }
  // Only now do parsers see the bytes (the FlatBuffers verifier first; the TFLite library later).
  model.metadata = ReadModelMetadata(model.bytes, path);
  if (options.verify_digest && model.metadata.contract_version >= 2) {
    if (!digest_at) {
      throw VerificationError("model file " + Printable(path) + " is damaged: a contract version " +
                              std::to_string(model.metadata.contract_version) + " model must carry exactly one "
                              "model_digest field; copy or compile it again (or skip the check with "
                              "--skip_digest_check if the file was verified elsewhere)");
    }
    if (model.metadata.model_digest !=
        std::string(reinterpret_cast<const char*>(model.bytes.data() + *digest_at), kDigits)) {
      throw VerificationError("model file " + Printable(path) + " is damaged: the digest found in the file is not "
                              "the metadata's model_digest; copy or compile it again");
    }
  }
  // Without a checked digest nothing vouches for the bytes: check the structure TFLite trusts.
  if (!model.digest_checked) CheckModelStructure(model.bytes, path);
  return model;
}

}  // namespace tflite_transfer
