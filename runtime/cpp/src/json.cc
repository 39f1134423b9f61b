#include "json.h"

#include <cstdlib>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <unordered_set>

namespace tflite_transfer {
namespace {

// Deeper nesting than this is corruption, and recursing further could overflow the stack.
constexpr int kMaxDepth = 256;

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Json ParseDocument() {
    Json value = ParseValue(0);
    SkipWhitespace();
    if (position_ != text_.size()) Fail("extra data after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void Fail(const std::string& problem) const {
    throw JsonError(problem + " at byte " + std::to_string(position_));
  }

  void SkipWhitespace() {
    while (position_ < text_.size() && (text_[position_] == ' ' || text_[position_] == '\t' ||
                                        text_[position_] == '\n' || text_[position_] == '\r')) {
      ++position_;
    }
  }

  bool Consume(char expected) {
    SkipWhitespace();
    if (position_ < text_.size() && text_[position_] == expected) {
      ++position_;
      return true;
    }
    return false;
  }

  void Expect(char expected) {
    if (!Consume(expected)) Fail(std::string("expected '") + expected + "'");
  }

  Json ParseValue(int depth) {
    if (depth > kMaxDepth) Fail("nesting deeper than " + std::to_string(kMaxDepth));
    SkipWhitespace();
    if (position_ >= text_.size()) Fail("unexpected end of JSON");
    char first = text_[position_];
    Json value;
    if (first == '{') {
      ++position_;
      value.kind = Json::Kind::kObject;
      if (Consume('}')) return value;
      // A hash set keeps the duplicate check linear: a 200k-key header took 90 s when every
      // key was compared with every earlier one.
      std::unordered_set<std::string> keys;
      do {
        SkipWhitespace();
        if (position_ >= text_.size() || text_[position_] != '"') Fail("expected a string key");
        std::string key = ParseString();
        if (!keys.insert(key).second) Fail("duplicate key " + JsonQuote(key));
        Expect(':');
        value.members.emplace_back(std::move(key), ParseValue(depth + 1));
      } while (Consume(','));
      Expect('}');
    } else if (first == '[') {
      ++position_;
      value.kind = Json::Kind::kArray;
      if (Consume(']')) return value;
      do {
        value.items.push_back(ParseValue(depth + 1));
      } while (Consume(','));
      Expect(']');
    } else if (first == '"') {
      value.kind = Json::Kind::kString;
      value.text = ParseString();
    } else if (first == '-' || (first >= '0' && first <= '9')) {
      value.kind = Json::Kind::kNumber;
      value.text = ParseNumber();
    } else if (text_.substr(position_, 4) == "true") {
      position_ += 4;
      value.kind = Json::Kind::kBool;
      value.boolean = true;
    } else if (text_.substr(position_, 5) == "false") {
      position_ += 5;
      value.kind = Json::Kind::kBool;
    } else if (text_.substr(position_, 4) == "null") {
      position_ += 4;
    } else {
      Fail("unexpected character");
    }
    return value;
  }

  std::string ParseNumber() {
    size_t start = position_;
    auto digits = [&] {
      size_t begin = position_;
      while (position_ < text_.size() && text_[position_] >= '0' && text_[position_] <= '9') {
        ++position_;
      }
      return position_ - begin;
    };
    if (text_[position_] == '-') ++position_;
    size_t integer_start = position_;
    size_t integer_digits = digits();
    if (integer_digits == 0) Fail("invalid number");
    if (integer_digits > 1 && text_[integer_start] == '0') Fail("number with a leading zero");
    if (position_ < text_.size() && text_[position_] == '.') {
      ++position_;
      if (!digits()) Fail("invalid number");
    }
    if (position_ < text_.size() && (text_[position_] == 'e' || text_[position_] == 'E')) {
      ++position_;
      if (position_ < text_.size() && (text_[position_] == '+' || text_[position_] == '-')) {
        ++position_;
      }
      if (!digits()) Fail("invalid number");
    }
    return std::string(text_.substr(start, position_ - start));
  }

  unsigned ParseHex4() {
    if (position_ + 4 > text_.size()) Fail("truncated \\u escape");
    unsigned value = 0;
    for (int index = 0; index < 4; ++index) {
      char digit = text_[position_++];
      value <<= 4;
      if (digit >= '0' && digit <= '9') value |= digit - '0';
      else if (digit >= 'a' && digit <= 'f') value |= digit - 'a' + 10;
      else if (digit >= 'A' && digit <= 'F') value |= digit - 'A' + 10;
      else Fail("invalid \\u escape");
    }
    return value;
  }

  static void AppendUtf8(std::string& out, unsigned code_point) {
    if (code_point < 0x80) {
      out += static_cast<char>(code_point);
    } else if (code_point < 0x800) {
      out += static_cast<char>(0xC0 | (code_point >> 6));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    } else if (code_point < 0x10000) {
      out += static_cast<char>(0xE0 | (code_point >> 12));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code_point >> 18));
      out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    }
  }

  std::string ParseString() {
    ++position_;  // the opening quote
    std::string out;
    while (true) {
      if (position_ >= text_.size()) Fail("unterminated string");
      unsigned char byte = static_cast<unsigned char>(text_[position_++]);
      if (byte == '"') return out;
      if (byte < 0x20) Fail("control character in a string");
      if (byte != '\\') {
        out += static_cast<char>(byte);
        continue;
      }
      if (position_ >= text_.size()) Fail("unterminated string");
      char escape = text_[position_++];
      switch (escape) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code_point = ParseHex4();
          if (code_point >= 0xD800 && code_point < 0xDC00) {
            if (text_.substr(position_, 2) != "\\u") Fail("lone surrogate in a string");
            position_ += 2;
            unsigned low = ParseHex4();
            if (low < 0xDC00 || low >= 0xE000) Fail("lone surrogate in a string");
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
          } else if (code_point >= 0xDC00 && code_point < 0xE000) {
            Fail("lone surrogate in a string");
          }
          AppendUtf8(out, code_point);
          break;
        }
        default: Fail("invalid escape in a string");
      }
    }
  }

  std::string_view text_;
  size_t position_ = 0;
};

bool IsIntegerLiteral(const std::string& text) {
  return !text.empty() && text.find_first_of(".eE") == std::string::npos;
}

}  // namespace

const Json* Json::Find(std::string_view key) const {
  for (const auto& [name, value] : members) {
    if (name == key) return &value;
  }
  return nullptr;
}

std::optional<uint64_t> Json::AsUInt64() const {
  if (kind != Kind::kNumber || !IsIntegerLiteral(text) || text[0] == '-') return std::nullopt;
  uint64_t value = 0;
  for (char digit : text) {
    uint64_t next = static_cast<uint64_t>(digit - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - next) / 10) return std::nullopt;
    value = value * 10 + next;
  }
  return value;
}

std::optional<int64_t> Json::AsInt64() const {
  if (kind != Kind::kNumber || !IsIntegerLiteral(text)) return std::nullopt;
  bool negative = text[0] == '-';
  Json magnitude = *this;
  if (negative) magnitude.text.erase(0, 1);
  std::optional<uint64_t> value = magnitude.AsUInt64();
  if (!value || *value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  return negative ? -static_cast<int64_t>(*value) : static_cast<int64_t>(*value);
}

std::optional<double> Json::AsDouble() const {
  if (kind != Kind::kNumber) return std::nullopt;
  // strtod reads '.' as the decimal point unless the program changed LC_NUMERIC (ours never
  // call setlocale); out-of-range literals give +-HUGE_VAL (inf), tiny ones 0 or a denormal.
  return std::strtod(text.c_str(), nullptr);
}

const char* Json::KindName() const {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return "bool";
    case Kind::kNumber: return "number";
    case Kind::kString: return "string";
    case Kind::kArray: return "array";
    case Kind::kObject: return "object";
  }
  return "?";
}

Json ParseJson(std::string_view text) { return Parser(text).ParseDocument(); }

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char character : text) {
    unsigned char byte = static_cast<unsigned char>(character);
    switch (character) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (byte < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
          out += escaped;
        } else {
          out += character;  // ensure_ascii=False: non-ASCII stays raw UTF-8
        }
    }
  }
  return out + "\"";
}

bool IsValidUtf8(std::string_view text) {
  size_t index = 0;
  while (index < text.size()) {
    unsigned char lead = static_cast<unsigned char>(text[index]);
    size_t length;
    unsigned code_point;
    if (lead < 0x80) { ++index; continue; }
    if (lead >= 0xC2 && lead <= 0xDF) { length = 2; code_point = lead & 0x1F; }
    else if (lead >= 0xE0 && lead <= 0xEF) { length = 3; code_point = lead & 0x0F; }
    else if (lead >= 0xF0 && lead <= 0xF4) { length = 4; code_point = lead & 0x07; }
    else return false;
    if (index + length > text.size()) return false;
    for (size_t offset = 1; offset < length; ++offset) {
      unsigned char next = static_cast<unsigned char>(text[index + offset]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if ((length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000) ||
        (code_point >= 0xD800 && code_point < 0xE000) || code_point > 0x10FFFF) {
      return false;
    }
    index += length;
  }
  return true;
}

std::string JsonQuoteAscii(std::string_view text) {
  std::string out = "\"";
  auto escape = [&out](unsigned unit) {
    char buffer[7];
    std::snprintf(buffer, sizeof buffer, "\\u%04x", unit);
    out += buffer;
  };
  for (size_t at = 0; at < text.size();) {
    unsigned char lead = static_cast<unsigned char>(text[at]);
    if (lead < 0x80) {
      if (lead == '"') out += "\\\"";
      else if (lead == '\\') out += "\\\\";
      else if (lead < 0x20 || lead == 0x7F) escape(lead);
      else out += static_cast<char>(lead);
      ++at;
      continue;
    }
    size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    unsigned code_point = lead & (length == 4 ? 0x07 : length == 3 ? 0x0F : 0x1F);
    for (size_t index = 1; index < length && at + index < text.size(); ++index) {
      code_point = (code_point << 6) | (static_cast<unsigned char>(text[at + index]) & 0x3F);
    }
    at += length;
    if (code_point >= 0x10000) {
      escape(0xD800 + ((code_point - 0x10000) >> 10));
      escape(0xDC00 + ((code_point - 0x10000) & 0x3FF));
    } else {
      escape(code_point);
    }
  }
  return out + "\"";
}

}  // namespace tflite_transfer
