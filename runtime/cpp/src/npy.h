// A tiny reader and writer of NumPy .npy files (format versions 1-3, little-endian, C order), enough for
// the demo's images, bottlenecks and labels.
#ifndef TFLITE_TRANSFER_NPY_H_
#define TFLITE_TRANSFER_NPY_H_

#include <string>

#include "tensor.h"

namespace tflite_transfer {

// Throws InvalidInputError naming the file on anything it cannot read.
Tensor ReadNpy(const std::string& path);

// Writes `tensor` as a version 1.0 .npy file (e.g. the bottlenecks `load` computed).
void WriteNpy(const std::string& path, const Tensor& tensor);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_NPY_H_
