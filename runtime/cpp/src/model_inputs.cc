#include "model_inputs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "errors.h"
#include "text.h"

namespace tflite_transfer {

bool AllFinite(const Tensor& tensor) {
  if (tensor.dtype == DType::kFloat32) {
    const float* values = tensor.data<float>();
    return std::all_of(values, values + tensor.num_elements(), [](float v) { return std::isfinite(v); });
  }
  if (tensor.dtype == DType::kFloat64) {
    const double* values = tensor.data<double>();
    return std::all_of(values, values + tensor.num_elements(), [](double v) { return std::isfinite(v); });
  }
  return true;
}

namespace {

std::string Number(double value) {
  char shown[64];
  std::snprintf(shown, sizeof shown, "%g", value);
  return shown;
}

// Float pixels inside the base's range (after the finiteness check).
void CheckRange(const Tensor& images, const std::optional<std::pair<double, double>>& image_range) {
  if (!image_range || images.dtype != DType::kFloat32) return;
  const float* values = images.data<float>();
  for (int64_t index = 0; index < images.num_elements(); ++index) {
    if (values[index] < image_range->first || values[index] > image_range->second) {
      throw InvalidInputError("image: value " + Number(values[index]) + " at index " + std::to_string(index) +
                              " is outside the base's pixel range [" + Number(image_range->first) + ", " +
                              Number(image_range->second) + "]");
    }
  }
}

std::string Join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + Quoted(name);
  return text;
}

}  // namespace

Tensor CheckImages(const Tensor& images, const Shape& image_shape, DType image_dtype,
                   const std::optional<std::pair<double, double>>& image_range) {
  if (images.shape.size() != image_shape.size() + 1 ||
      !std::equal(image_shape.begin(), image_shape.end(), images.shape.begin() + 1)) {
    throw InvalidInputError("image: shape " + ShapeString(images.shape) + " does not fit the model's [batch, " +
                            ShapeString(image_shape).substr(1));
  }
  if (images.shape[0] < 1) throw InvalidInputError("image: the batch is empty; pass at least one image");
  if (images.dtype == image_dtype) {
    if (!AllFinite(images)) throw InvalidInputError("image: contains NaN or Inf");
    CheckRange(images, image_range);
    return images;
  }
  if (image_dtype != DType::kFloat32) {
    throw InvalidInputError(std::string("image: dtype ") + NumpyName(images.dtype) + ", the model takes " +
                            NumpyName(image_dtype) + " (quantized input: pass the raw pixel values)");
  }
  Tensor converted = Tensor::Zeros(DType::kFloat32, images.shape);
  float* out = converted.data<float>();
  for (int64_t index = 0; index < images.num_elements(); ++index) {
    switch (images.dtype) {
      case DType::kFloat64: out[index] = static_cast<float>(images.data<double>()[index]); break;
      case DType::kUInt8: out[index] = images.data<uint8_t>()[index]; break;
      case DType::kInt8: out[index] = images.data<int8_t>()[index]; break;
      case DType::kInt32: out[index] = static_cast<float>(images.data<int32_t>()[index]); break;
      case DType::kInt64: out[index] = static_cast<float>(images.data<int64_t>()[index]); break;
      default:
        throw InvalidInputError(std::string("image: dtype ") + NumpyName(images.dtype) + " is not supported");
    }
  }
  if (!AllFinite(converted)) throw InvalidInputError("image: contains NaN or Inf");
  CheckRange(converted, image_range);
  return converted;
}

void CheckBottlenecks(const Tensor& bottlenecks, int64_t bottleneck_size) {
  if (bottlenecks.dtype != DType::kFloat32 || bottlenecks.shape.size() != 2 ||
      bottlenecks.shape[1] != bottleneck_size) {
    throw InvalidInputError("bottleneck: " + bottlenecks.Describe() + " does not fit float32 [batch, " +
                            std::to_string(bottleneck_size) + "]");
  }
  if (bottlenecks.shape[0] < 1) throw InvalidInputError("bottleneck: the batch is empty; pass at least one sample");
  if (!AllFinite(bottlenecks)) throw InvalidInputError("bottleneck: contains NaN or Inf");
}

void CheckLabels(const Tensor& labels, int64_t batch, const ModelMetadata& metadata) {
  const int64_t classes = metadata.num_outputs;
  if (metadata.classifies()) {
    if (labels.dtype != DType::kInt32 || labels.shape != Shape{batch}) {
      throw InvalidInputError("label: expected " + std::to_string(batch) + " int32 class ids, got " + labels.Describe());
    }
    for (int64_t index = 0; index < batch; ++index) {
      int32_t label = labels.data<int32_t>()[index];
      if (label < 0 || label >= classes) {
        throw InvalidInputError("label: " + std::to_string(label) + " is outside [0, " + std::to_string(classes) + ")");
      }
    }
    return;
  }
  Shape expected{batch};
  expected.insert(expected.end(), metadata.label.shape.begin(), metadata.label.shape.end());
  if (labels.dtype != metadata.label.dtype || labels.shape != expected) {
    throw InvalidInputError(std::string("label: expected ") + NumpyName(metadata.label.dtype) + " targets " +
                            ShapeString(expected) + ", got " + labels.Describe());
  }
  if (!AllFinite(labels)) throw InvalidInputError("label: contains NaN or Inf");
}

void CheckLearningRate(double learning_rate, const std::string& what) {
  if (!(std::isfinite(learning_rate) && learning_rate > 0 && learning_rate <= contract::kMaxLearningRate)) {
    throw InvalidInputError(what + " must be finite, > 0 and <= " + Number(contract::kMaxLearningRate) + ", got " +
                            Number(learning_rate) + " (0 would not train; larger rates overflow float32 weights)");
  }
}

void CheckStateMeaning(const StateSpec& spec, const Tensor& value) {
  const std::string what = "state " + Quoted(spec.name);
  if (spec.role == contract::kRoleLearningRate && value.dtype == DType::kFloat32) {
    for (int64_t index = 0; index < value.num_elements(); ++index) CheckLearningRate(value.data<float>()[index], what);
  }
  if (spec.role == contract::kRoleStep && value.dtype == DType::kInt32) {
    for (int64_t index = 0; index < value.num_elements(); ++index) {
      int32_t step = value.data<int32_t>()[index];
      if (step < contract::kMinStep || step > contract::kMaxStep) {
        throw InvalidInputError(what + ": step " + std::to_string(step) + " is outside [" +
                                std::to_string(contract::kMinStep) + ", " + std::to_string(contract::kMaxStep) + "]");
      }
    }
  }
}

void CheckState(const std::map<std::string, Tensor>& state, const std::vector<StateSpec>& specs) {
  std::vector<std::string> missing, unexpected;
  for (const StateSpec& spec : specs) {
    if (!state.count(spec.name)) missing.push_back(spec.name);
  }
  for (const auto& [name, value] : state) {
    bool known = false;
    for (const StateSpec& spec : specs) known = known || spec.name == name;
    if (!known) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty()) {
    throw InvalidInputError("state: missing [" + Join(missing) + "], unexpected [" + Join(unexpected) + "]");
  }
  for (const StateSpec& spec : specs) {
    const Tensor& value = state.at(spec.name);
    if (value.shape != spec.shape || value.dtype != spec.dtype) {
      throw InvalidInputError("state " + Quoted(spec.name) + ": " + value.Describe() + ", expected " +
                              NumpyName(spec.dtype) + " " + ShapeString(spec.shape));
    }
    if (!AllFinite(value)) throw InvalidInputError("state " + Quoted(spec.name) + ": contains NaN or Inf");
    CheckStateMeaning(spec, value);
  }
}

void CheckStepsLeft(int64_t taken, int64_t steps) {
  if (steps > contract::kMaxStep - taken) {
    throw InvalidInputError("the optimizer step counter is " + std::to_string(taken) + "; " + std::to_string(steps) +
                            " more step(s) would pass " + std::to_string(contract::kMaxStep) +
                            " (the int32 step wraps and Adam's update becomes NaN): save a checkpoint and "
                            "call initialize, or restore a state with a smaller step");
  }
}

void CheckFixedBatch(const char* signature, const char* input, int64_t batch, std::optional<int64_t> fixed) {
  if (fixed && batch != *fixed) {
    throw InvalidInputError(std::string(input) + ": '" + signature + "' of this model has a fixed batch of " +
                            std::to_string(*fixed) + ", got " + std::to_string(batch) + "; pass exactly " +
                            std::to_string(*fixed) + " samples per call");
  }
}

}  // namespace tflite_transfer
