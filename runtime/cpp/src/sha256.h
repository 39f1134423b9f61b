// SHA-256 (FIPS 180-4), incremental, so checkpoint checksums and model digests are computed
// in bounded memory without depending on a crypto library the TFLite install may lack.
#ifndef TFLITE_TRANSFER_SHA256_H_
#define TFLITE_TRANSFER_SHA256_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tflite_transfer {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  void Update(std::string_view text) { Update(text.data(), text.size()); }
  std::string HexDigest();  // 64 lowercase hex digits; finishes the hash

 private:
  void Block(const uint8_t* block);
  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Lowercase hex of SHA-256 over `size` bytes.
std::string Sha256Hex(const void* data, size_t size);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_SHA256_H_
