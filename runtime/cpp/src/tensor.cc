#include "tensor.h"

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
