// The little JSON this runtime needs: the model's "tflite_transfer" metadata and checkpoint
// headers. Objects keep their key order and refuse duplicate keys (readers disagree on which
// duplicate wins, so the checkpoint format refuses them); numbers keep their literal text so
// offsets up to 2^64 - 1 are read exactly.
#ifndef TFLITE_TRANSFER_JSON_H_
#define TFLITE_TRANSFER_JSON_H_

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tflite_transfer {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::string text;  // a string's value (UTF-8), or a number's literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* Find(std::string_view key) const;  // nullptr unless an object with that key
  bool is_string() const { return kind == Kind::kString; }
  bool is_object() const { return kind == Kind::kObject; }
  bool is_array() const { return kind == Kind::kArray; }
  // The value of a number literal without fraction or exponent (Python's `int`).
  std::optional<uint64_t> AsUInt64() const;
  std::optional<int64_t> AsInt64() const;
  // Any number literal as the nearest double (out-of-range literals: +-inf), or nullopt.
  std::optional<double> AsDouble() const;
  const char* KindName() const;
};

// Parses one JSON value (surrounding whitespace allowed); throws JsonError saying where.
Json ParseJson(std::string_view text);

// `text` as a JSON string literal exactly as Python's json.dumps(..., ensure_ascii=False)
// writes it, so C++ and Python checkpoints of the same state are byte-identical.
std::string JsonQuote(std::string_view text);

// `text` (valid UTF-8) as a JSON string literal with every non-ASCII character and control
// character escaped (\uXXXX, surrogate pairs above U+FFFF): Python's json.dumps default, and
// safe to print on a terminal.
std::string JsonQuoteAscii(std::string_view text);

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view text);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_JSON_H_
