#include "text.h"

#include <cstdint>
#include <cstdio>

namespace tflite_transfer {
namespace {

// Length of the valid UTF-8 sequence at text[at] (1-4), or 0 if the bytes there are not one.
size_t Utf8SequenceLength(std::string_view text, size_t at, uint32_t& code_point) {
  auto byte = [&](size_t index) { return static_cast<uint8_t>(text[index]); };
  uint8_t lead = byte(at);
  size_t length;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code_point = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code_point = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code_point = lead & 0x07;
  } else {
    return 0;
  }
  if (at + length > text.size()) return 0;
  for (size_t index = 1; index < length; ++index) {
    if ((byte(at + index) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(at + index) & 0x3F);
  }
  static const uint32_t kSmallest[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kSmallest[length] || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

bool MustEscape(uint32_t code_point) {
  return code_point < 0x20 || (code_point >= 0x7F && code_point <= 0x9F) ||
         code_point == 0x2028 || code_point == 0x2029 ||              // line/paragraph separators
         (code_point >= 0x202A && code_point <= 0x202E) ||            // bidi embeddings/overrides
         (code_point >= 0x2066 && code_point <= 0x2069) ||            // bidi isolates
         code_point == 0x200E || code_point == 0x200F || code_point == 0xFEFF;
}

}  // namespace

std::string Printable(std::string_view text) {
  std::string shown;
  shown.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    uint32_t code_point = 0;
    size_t length = Utf8SequenceLength(text, at, code_point);
    if (length != 0 && !MustEscape(code_point)) {
      shown.append(text.substr(at, length));
      at += length;
      continue;
    }
    for (size_t index = 0; index < (length ? length : 1); ++index) {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<uint8_t>(text[at + index]));
      shown += escaped;
    }
    at += length ? length : 1;
  }
  return shown;
}

std::string Quoted(std::string_view text) { return "'" + Printable(text) + "'"; }

}  // namespace tflite_transfer
