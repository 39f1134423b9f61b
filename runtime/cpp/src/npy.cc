#include "npy.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "errors.h"

namespace tflite_transfer {
namespace {

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (24, 7), }
std::string DictValue(const std::string& header, const std::string& key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) return "";
  at = header.find(':', at);
  if (at == std::string::npos) return "";
  size_t start = header.find_first_not_of(' ', at + 1);
  if (start == std::string::npos) return "";
  if (header[start] == '\'') return header.substr(start + 1, header.find('\'', start + 1) - start - 1);
  if (header[start] == '(') return header.substr(start + 1, header.find(')', start) - start - 1);
  return header.substr(start, header.find_first_of(",}", start) - start);
}

}  // namespace

Tensor ReadNpy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InvalidInputError(path + ": cannot open the .npy file");
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto bad = [&](const std::string& problem) {
    return InvalidInputError(path + ": not a readable .npy file (" + problem + "); write it with numpy.save");
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("no \\x93NUMPY magic");
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_start = major == 1 ? 10 : 12;
  if (major < 1 || major > 3 || bytes.size() < header_start) throw bad("unknown format version");
  size_t header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  if (major > 1) {
    header_length |= (static_cast<size_t>(static_cast<unsigned char>(bytes[10])) << 16) |
                     (static_cast<size_t>(static_cast<unsigned char>(bytes[11])) << 24);
  }
  if (header_start + header_length > bytes.size()) throw bad("truncated header");
  std::string header = bytes.substr(header_start, header_length);

  std::string descr = DictValue(header, "descr");
  if (DictValue(header, "fortran_order") != "False") throw bad("Fortran order; save a C-order array");
  static const std::pair<const char*, DType> kDescriptors[] = {
      {"<f8", DType::kFloat64}, {"<f4", DType::kFloat32}, {"<f2", DType::kFloat16},
      {"<i8", DType::kInt64},   {"<i4", DType::kInt32},   {"<i2", DType::kInt16},
      {"|i1", DType::kInt8},    {"<u8", DType::kUInt64},  {"<u4", DType::kUInt32},
      {"<u2", DType::kUInt16},  {"|u1", DType::kUInt8},   {"|b1", DType::kBool}};
  Tensor tensor;
  bool known = false;
  for (const auto& [code, dtype] : kDescriptors) {
    if (descr == code) {
      tensor.dtype = dtype;
      known = true;
    }
  }
  if (!known) throw bad("dtype '" + descr + "' is not supported; use little-endian numbers");
  std::string shape = DictValue(header, "shape");
  size_t at = 0;
  while (at < shape.size()) {
    size_t next = shape.find(',', at);
    std::string item = shape.substr(at, next == std::string::npos ? std::string::npos : next - at);
    if (item.find_first_not_of(' ') != std::string::npos) {
      try {
        tensor.shape.push_back(std::stoll(item));
      } catch (const std::exception&) {
        throw bad("shape '(" + shape + ")'");
      }
    }
    if (next == std::string::npos) break;
    at = next + 1;
  }
  std::optional<int64_t> count = NumElements(tensor.shape);
  size_t data_start = header_start + header_length;
  if (!count || bytes.size() - data_start != static_cast<uint64_t>(*count) * ItemSize(tensor.dtype)) {
    throw bad("the data does not match shape (" + shape + ") of " + descr);
  }
  tensor.bytes.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_start), bytes.end());
  return tensor;
}

void WriteNpy(const std::string& path, const Tensor& tensor) {
  static const std::pair<DType, const char*> kDescriptors[] = {
      {DType::kFloat64, "<f8"}, {DType::kFloat32, "<f4"}, {DType::kInt64, "<i8"},
      {DType::kInt32, "<i4"},   {DType::kInt8, "|i1"},    {DType::kUInt8, "|u1"}};
  const char* descr = nullptr;
  for (const auto& [dtype, code] : kDescriptors) {
    if (dtype == tensor.dtype) descr = code;
  }
  if (!descr) throw InvalidInputError(path + ": cannot write " + tensor.Describe() + " as .npy");
  std::string shape;
  for (int64_t size : tensor.shape) shape += std::to_string(size) + ",";
  if (tensor.shape.size() > 1) shape.pop_back();
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" +
                       shape + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // data starts 64-byte aligned
  header += '\n';
  std::string prefix = "\x93NUMPY\x01";
  prefix += '\0';
  prefix += static_cast<char>(header.size() & 0xFF);
  prefix += static_cast<char>(header.size() >> 8);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << prefix << header;
  file.write(reinterpret_cast<const char*>(tensor.bytes.data()), static_cast<std::streamsize>(tensor.bytes.size()));
  if (!file.flush()) throw InvalidInputError(path + ": could not write the .npy file");
}

}  // namespace tflite_transfer
