// Checks of every value passed to a signature, before the interpreter sees it: shapes, dtypes,
// batch sizes (fixed batches of the contract), label ranges, NaN/Inf. One InvalidInputError
// line naming the input and what it should be.
#ifndef TFLITE_TRANSFER_MODEL_INPUTS_H_
#define TFLITE_TRANSFER_MODEL_INPUTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "model_metadata.h"
#include "tensor.h"

namespace tflite_transfer {

bool AllFinite(const Tensor& tensor);

// Images as the model takes them: [batch >= 1, *image_shape] of `image_dtype` (a float model
// also takes any numeric pixels, converted to float32 as the Python runtime does).
Tensor CheckImages(const Tensor& images, const Shape& image_shape, DType image_dtype);

// float32 [batch >= 1, bottleneck_size], finite.
void CheckBottlenecks(const Tensor& bottlenecks, int64_t bottleneck_size);

// Labels per the model's label spec: int32 class ids [batch] in range, or float32 targets.
void CheckLabels(const Tensor& labels, int64_t batch, const ModelMetadata& metadata);

// The largest learning rate accepted (as runtime/inputs.py): a float32 step lr * gradient
// overflows near 3e38; 1e6 keeps the first step finite for any real bottleneck.
inline constexpr double kMaxLearningRate = 1e6;
// Adam's bias correction computes beta ** (step + 1) with an int32 step.
inline constexpr int64_t kMaxStep = 2147483646;

// Finite, > 0 and <= kMaxLearningRate.
void CheckLearningRate(double learning_rate, const std::string& what);

// Restored values that are well-formed but meaningless: a learning rate outside (0, 1e6], a
// step outside [0, kMaxStep]. (Shapes, dtypes and finiteness are checked by the caller.)
void CheckStateMeaning(const StateSpec& spec, const Tensor& value);

// A signature with a fixed batch takes exactly that many samples per call.
void CheckFixedBatch(const char* signature, const char* input, int64_t batch, std::optional<int64_t> fixed);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_INPUTS_H_
