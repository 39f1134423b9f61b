#include "tensor.h"

#include <cmath>
#include <limits>

#include "errors.h"

namespace tflite_transfer {
namespace {

struct DTypeInfo {
  DType dtype;
  size_t item_size;
  const char* numpy_name;
  const char* code;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kFloat64, 8, "float64", "F64"}, {DType::kFloat32, 4, "float32", "F32"},
    {DType::kFloat16, 2, "float16", "F16"}, {DType::kInt64, 8, "int64", "I64"},
    {DType::kInt32, 4, "int32", "I32"},     {DType::kInt16, 2, "int16", "I16"},
    {DType::kInt8, 1, "int8", "I8"},        {DType::kUInt64, 8, "uint64", "U64"},
    {DType::kUInt32, 4, "uint32", "U32"},   {DType::kUInt16, 2, "uint16", "U16"},
    {DType::kUInt8, 1, "uint8", "U8"},      {DType::kBool, 1, "bool", "BOOL"},
};

const DTypeInfo& Info(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  throw TransferError("internal error: unknown dtype");
}

}  // namespace

size_t ItemSize(DType dtype) { return Info(dtype).item_size; }
const char* NumpyName(DType dtype) { return Info(dtype).numpy_name; }
const char* SafetensorsCode(DType dtype) { return Info(dtype).code; }

std::optional<DType> DTypeFromSafetensorsCode(std::string_view code) {
  for (const DTypeInfo& info : kDTypes) {
    if (code == info.code) return info.dtype;
  }
  return std::nullopt;
}

std::optional<DType> DTypeFromNumpyName(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.numpy_name) return info.dtype;
  }
  return std::nullopt;
}

std::string ShapeString(const Shape& shape) {
  std::string text = "[";
  for (size_t index = 0; index < shape.size(); ++index) {
    if (index) text += ", ";
    text += std::to_string(shape[index]);
  }
  return text + "]";
}

std::optional<int64_t> NumElements(const Shape& shape) {
  int64_t count = 1;
  for (int64_t size : shape) {
    if (size < 0) return std::nullopt;
    if (size != 0 && count > std::numeric_limits<int64_t>::max() / size) return std::nullopt;
    count *= size;
  }
  return count;
}

Tensor Tensor::Zeros(DType dtype, Shape shape) {
  std::optional<int64_t> count = NumElements(shape);
  if (!count) throw InvalidInputError("impossible tensor shape " + ShapeString(shape));
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes.assign(static_cast<size_t>(*count) * ItemSize(dtype), 0);
  return tensor;
}

std::string Tensor::Describe() const {
  return std::string(NumpyName(dtype)) + " " + ShapeString(shape);
}

namespace {

// IEEE 754 half precision to double (sign, 5-bit exponent, 10-bit fraction).
double HalfToDouble(uint16_t bits) {
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  const int exponent = (bits >> 10) & 0x1f;
  const int fraction = bits & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(fraction, -24);
  if (exponent == 0x1f) return fraction ? std::numeric_limits<double>::quiet_NaN() : sign * HUGE_VAL;
  return sign * std::ldexp(fraction + 1024, exponent - 25);
}

}  // namespace

double ElementAsDouble(const Tensor& tensor, int64_t index) {
  switch (tensor.dtype) {
    case DType::kFloat64: return tensor.data<double>()[index];
    case DType::kFloat32: return tensor.data<float>()[index];
    case DType::kFloat16: return HalfToDouble(tensor.data<uint16_t>()[index]);
    case DType::kInt64: return static_cast<double>(tensor.data<int64_t>()[index]);
    case DType::kInt32: return tensor.data<int32_t>()[index];
    case DType::kInt16: return tensor.data<int16_t>()[index];
    case DType::kInt8: return tensor.data<int8_t>()[index];
    case DType::kUInt64: return static_cast<double>(tensor.data<uint64_t>()[index]);
    case DType::kUInt32: return tensor.data<uint32_t>()[index];
    case DType::kUInt16: return tensor.data<uint16_t>()[index];
    case DType::kUInt8: return tensor.data<uint8_t>()[index];
    case DType::kBool: return tensor.bytes[static_cast<size_t>(index)] ? 1.0 : 0.0;
  }
  return 0;
}

Tensor ConvertToFloat(const Tensor& tensor, DType dtype) {
  Tensor converted = Tensor::Zeros(dtype, tensor.shape);
  for (int64_t index = 0; index < tensor.num_elements(); ++index) {
    const double value = ElementAsDouble(tensor, index);
    if (dtype == DType::kFloat64) {
      converted.data<double>()[index] = value;
    } else {
      // Beyond float32: inf, as numpy (a plain cast of such a double is undefined in C++).
      const bool beyond = std::isfinite(value) && std::abs(value) > std::numeric_limits<float>::max();
      const float infinity = std::numeric_limits<float>::infinity();
      converted.data<float>()[index] = beyond ? (value > 0 ? infinity : -infinity) : static_cast<float>(value);
    }
  }
  return converted;
}

Tensor SliceRows(const Tensor& tensor, int64_t begin, int64_t end) {
  Tensor rows = tensor;
  rows.shape[0] = end - begin;
  size_t row_bytes = tensor.shape[0] ? tensor.bytes.size() / static_cast<size_t>(tensor.shape[0]) : 0;
  rows.bytes.assign(tensor.bytes.begin() + begin * row_bytes, tensor.bytes.begin() + end * row_bytes);
  return rows;
}

void AppendRows(Tensor& into, const Tensor& rows) {
  if (into.shape.empty()) {
    into = rows;
    return;
  }
  into.shape[0] += rows.shape.at(0);
  into.bytes.insert(into.bytes.end(), rows.bytes.begin(), rows.bytes.end());
}

}  // namespace tflite_transfer
