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

std::vector<std::string> NonFiniteEntries(const std::map<std::string, Tensor>& state, const std::vector<StateSpec>& specs) {
  std::vector<std::string> names;
  for (const StateSpec& spec : specs) {
    auto found = state.find(spec.name);
    if (spec.role != contract::kRoleBaseState && found != state.end() && !AllFinite(found->second)) names.push_back(spec.name);
  }
  return names;
}

namespace {

std::string Number(double value) {
  char shown[64];
  std::snprintf(shown, sizeof shown, "%g", value);
  return shown;
}

// One-hot (or soft) rows: float32 [batch, classes], each >= 0 and summing to 1 (the
// cross-entropy gradient softmax - target is the true gradient only for such rows).
void CheckOneHotRows(const Tensor& labels, int64_t batch, int64_t classes) {
  if (labels.dtype != DType::kFloat32 || labels.shape != Shape{batch, classes}) {
    throw InvalidInputError("label: expected one-hot (or soft) float targets [" + std::to_string(batch) + ", " +
                            std::to_string(classes) + "], got " + labels.Describe());
  }
  if (!AllFinite(labels)) throw InvalidInputError("label: contains NaN or Inf");
  const float* values = labels.data<float>();
  for (int64_t index = 0; index < batch * classes; ++index) {
    if (values[index] < 0) {
      throw InvalidInputError("label: row " + std::to_string(index / classes) + " has " + Number(values[index]) +
                              " at class " + std::to_string(index % classes) + "; one-hot and soft targets are >= 0");
    }
  }
  for (int64_t row = 0; row < batch; ++row) {
    double sum = 0;
    for (int64_t column = 0; column < classes; ++column) sum += values[row * classes + column];
    if (std::abs(sum - 1.0) > contract::kOneHotSumTolerance) {
      throw InvalidInputError("label: row " + std::to_string(row) + " sums to " + Number(sum) +
                              "; one-hot and soft targets sum to 1 (within " + Number(contract::kOneHotSumTolerance) + ")");
    }
  }
}

std::string Join(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + Quoted(name);
  return text;
}

}  // namespace

Tensor CheckInput(const Tensor& values, const std::string& name, const InputSpec& spec) {
  Tensor batch = values;
  if (batch.shape == spec.shape) batch.shape.insert(batch.shape.begin(), 1);  // one sample
  if (batch.shape.size() != spec.shape.size() + 1 || !std::equal(spec.shape.begin(), spec.shape.end(), batch.shape.begin() + 1)) {
    throw InvalidInputError(name + ": shape " + ShapeString(values.shape) + " does not fit the model's [batch, " +
                            ShapeString(spec.shape).substr(1));
  }
  if (batch.shape[0] < 1) throw InvalidInputError(name + ": the batch is empty; pass at least one sample");
  if (spec.dtype != DType::kFloat32 && spec.dtype != DType::kFloat64) {
    if (batch.dtype != spec.dtype) {
      throw InvalidInputError(name + ": dtype " + NumpyName(batch.dtype) + ", the model takes " + NumpyName(spec.dtype) +
                              " (quantized input: pass the raw values)");
    }
    return batch;  // an integer type bounds its own values
  }
  if (batch.dtype == DType::kBool) throw InvalidInputError(name + ": dtype bool is not a numeric input value");
  Tensor converted = batch.dtype == spec.dtype ? batch : ConvertToFloat(batch, spec.dtype);
  if (!AllFinite(converted)) throw InvalidInputError(name + ": contains NaN or Inf");
  if (const auto& range = spec.range) {
    double low = ElementAsDouble(converted, 0), high = low;
    for (int64_t index = 1; index < converted.num_elements(); ++index) {
      const double value = ElementAsDouble(converted, index);
      low = std::min(low, value);
      high = std::max(high, value);
    }
    if (low < range->first || high > range->second) {
      throw InvalidInputError(name + ": values span [" + Number(low) + ", " + Number(high) + "] but the model takes " +
                              (spec.kind == "image" ? "pixels" : "values") + " in [" + Number(range->first) + ", " +
                              Number(range->second) + "]");
    }
  }
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
  if (metadata.label.kind == contract::kLabelOneHot) return CheckOneHotRows(labels, batch, classes);
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
    // A base's own state may legitimately hold -inf (a running maximum's start) or NaN.
    if (spec.role != contract::kRoleBaseState && !AllFinite(value)) {
      throw InvalidInputError("state " + Quoted(spec.name) + ": contains NaN or Inf");
    }
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
