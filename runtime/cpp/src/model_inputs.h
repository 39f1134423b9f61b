// Checks of every value passed to a signature, before the interpreter sees it: shapes, dtypes,
// batch sizes (fixed batches of the contract), label ranges, NaN/Inf. One InvalidInputError
// line naming the input and what it should be.
#ifndef TFLITE_TRANSFER_MODEL_INPUTS_H_
#define TFLITE_TRANSFER_MODEL_INPUTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model_metadata.h"
#include "tensor.h"

namespace tflite_transfer {

bool AllFinite(const Tensor& tensor);

// Names of the float entries of `state` holding NaN or Inf, base_state entries not counted.
std::vector<std::string> NonFiniteEntries(const std::map<std::string, Tensor>& state, const std::vector<StateSpec>& specs);

// The model's input (an image or any tensor) as the model takes it (inputs.model_input):
// [batch >= 1, *spec.shape] of spec.dtype; a float input also takes any numeric values
// (converted as the Python runtime does), finite and inside spec.range when it is known.
// Messages name the input `name` and say "pixels" only for kind image.
Tensor CheckInput(const Tensor& values, const std::string& name, const InputSpec& spec);

// float32 [batch >= 1, bottleneck_size], finite.
void CheckBottlenecks(const Tensor& bottlenecks, int64_t bottleneck_size);

// Labels per the model's label spec: int32 class ids [batch] in range, float32 targets, or
// float32 one-hot (or soft) rows [batch, classes]: finite, >= 0 and summing to 1 within
// contract::kOneHotSumTolerance, each problem with its own message.
void CheckLabels(const Tensor& labels, int64_t batch, const ModelMetadata& metadata);

// Finite, > 0 and <= contract::kMaxLearningRate (a float32 step lr * gradient overflows near
// 3e38; the bound keeps the first step finite for any real bottleneck).
void CheckLearningRate(double learning_rate, const std::string& what);

// Restored values that are well-formed but meaningless: a learning rate outside
// (0, kMaxLearningRate], a step outside [kMinStep, kMaxStep]. (Shapes, dtypes and finiteness
// are checked by CheckState.)
void CheckStateMeaning(const StateSpec& spec, const Tensor& value);

// A whole training state for `restore`: exactly the metadata's names, each with its shape and
// dtype, every float finite (except a base's own state, role base_state: a running maximum may
// start at -inf), and CheckStateMeaning; InvalidInputError naming the first problem.
void CheckState(const std::map<std::string, Tensor>& state, const std::vector<StateSpec>& specs);

// `steps` more optimizer steps from step `taken` must stay <= contract::kMaxStep (the int32 step
// wraps after it and Adam's update becomes NaN).
void CheckStepsLeft(int64_t taken, int64_t steps);

// A signature with a fixed batch takes exactly that many samples per call.
void CheckFixedBatch(const char* signature, const char* input, int64_t batch, std::optional<int64_t> fixed);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_MODEL_INPUTS_H_
