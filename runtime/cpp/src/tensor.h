// A named-free tensor value: dtype, shape and little-endian row-major bytes. Used for
// signature inputs/outputs, checkpoint tensors and .npy arrays alike.
#ifndef TFLITE_TRANSFER_TENSOR_H_
#define TFLITE_TRANSFER_TENSOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tflite_transfer {

// The element types a checkpoint can hold (runtime/SPEC.md#dtype-codes).
enum class DType { kFloat64, kFloat32, kFloat16, kInt64, kInt32, kInt16, kInt8,
                   kUInt64, kUInt32, kUInt16, kUInt8, kBool };

size_t ItemSize(DType dtype);
const char* NumpyName(DType dtype);        // "float32", as the Python runtime prints it
const char* SafetensorsCode(DType dtype);  // "F32", as the checkpoint header stores it
std::optional<DType> DTypeFromSafetensorsCode(std::string_view code);
std::optional<DType> DTypeFromNumpyName(std::string_view name);

using Shape = std::vector<int64_t>;
std::string ShapeString(const Shape& shape);  // "[3, 7]"
// Number of elements, or nullopt if a size is negative or the product overflows int64.
std::optional<int64_t> NumElements(const Shape& shape);

struct Tensor {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::vector<uint8_t> bytes;  // element data, little-endian, C order

  static Tensor Zeros(DType dtype, Shape shape);
  int64_t num_elements() const { return *NumElements(shape); }
  template <typename T> T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T> const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  std::string Describe() const;  // "float32 [3, 7]"
};

// Element `index` of any numeric tensor as a double (float16 decoded, bool as 0/1).
double ElementAsDouble(const Tensor& tensor, int64_t index);
// A numeric tensor converted to float32 or float64 (`dtype`), as numpy's astype does.
Tensor ConvertToFloat(const Tensor& tensor, DType dtype);

// Rows [begin, end) of a batch-first tensor (begin <= end <= shape[0]).
Tensor SliceRows(const Tensor& tensor, int64_t begin, int64_t end);
// `rows` appended below `into` (same dtype and row shape); an empty `into` becomes `rows`.
void AppendRows(Tensor& into, const Tensor& rows);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_TENSOR_H_
