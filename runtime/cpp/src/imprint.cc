#include "imprint.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "errors.h"
#include "model_inputs.h"

namespace tflite_transfer {
namespace {

const StateSpec* SingleKernel(const ModelMetadata& metadata) {
  const StateSpec* kernel = nullptr;
  for (const StateSpec& spec : metadata.state) {
    if (spec.role != contract::kRoleKernel) continue;
    if (kernel) return nullptr;
    kernel = &spec;
  }
  return kernel;
}

// Each sample's weight per class: its one-hot (or soft) label row, or its class id as a row.
std::vector<double> ClassWeights(const Tensor& labels, int64_t samples, int64_t classes) {
  std::vector<double> weights(static_cast<size_t>(samples * classes), 0.0);
  for (int64_t row = 0; row < samples; ++row) {
    if (labels.dtype == DType::kInt32) {
      weights[static_cast<size_t>(row * classes + labels.data<int32_t>()[row])] = 1.0;
    } else {
      for (int64_t c = 0; c < classes; ++c) weights[static_cast<size_t>(row * classes + c)] = labels.data<float>()[row * classes + c];
    }
  }
  return weights;
}

}  // namespace

bool CanImprint(const ModelMetadata& metadata) { return metadata.classifies() && SingleKernel(metadata); }

void Imprint(TransferModel& model, const Tensor& bottlenecks, const Tensor& labels) {
  const ModelMetadata& metadata = model.metadata();
  const StateSpec* kernel_spec = SingleKernel(metadata);
  if (!metadata.classifies() || !kernel_spec) {
    throw UnsupportedModelError("imprint needs a single-layer softmax head (--head=softmax)");
  }
  const StateSpec* bias_spec = nullptr;
  for (const StateSpec& spec : metadata.state) {
    if (spec.role == contract::kRoleBias && spec.layer == kernel_spec->layer) bias_spec = &spec;
  }
  if (!bias_spec || kernel_spec->dtype != DType::kFloat32 || bias_spec->dtype != DType::kFloat32) {
    throw UnsupportedModelError("imprint needs a single-layer softmax head with a float32 kernel and bias");
  }
  CheckBottlenecks(bottlenecks, metadata.bottleneck_size);
  const int64_t samples = bottlenecks.shape[0], features = bottlenecks.shape[1], classes = metadata.num_outputs;
  CheckLabels(labels, samples, metadata);

  const std::vector<double> weights = ClassWeights(labels, samples, classes);
  std::vector<double> totals(static_cast<size_t>(classes), 0.0);
  std::vector<std::vector<double>> means(static_cast<size_t>(classes));
  std::vector<int64_t> present;
  for (int64_t c = 0; c < classes; ++c) {
    for (int64_t row = 0; row < samples; ++row) totals[c] += weights[row * classes + c];
    if (totals[c] > 0) present.push_back(c);
  }
  const float* x = bottlenecks.data<float>();
  for (int64_t c : present) {
    means[c].assign(static_cast<size_t>(features), 0.0);
    for (int64_t row = 0; row < samples; ++row) {
      const double weight = weights[row * classes + c];
      for (int64_t j = 0; j < features && weight != 0; ++j) means[c][j] += weight * x[row * features + j];
    }
    for (double& value : means[c]) value /= totals[c];
  }
  double distance_sum = 0.0, distance_max = 0.0;
  for (int64_t row = 0; row < samples; ++row) {
    for (int64_t c : present) {
      double distance = 0.0;
      for (int64_t j = 0; j < features; ++j) distance += (x[row * features + j] - means[c][j]) * (x[row * features + j] - means[c][j]);
      distance_sum += distance;
      distance_max = std::max(distance_max, distance);
    }
  }
  const double scale = 8.0 / std::max(distance_sum / static_cast<double>(samples * present.size()), 1e-12);

  TensorMap state = model.GetState();
  Tensor& kernel = state.at(kernel_spec->name);
  Tensor& bias = state.at(bias_spec->name);
  std::fill(kernel.bytes.begin(), kernel.bytes.end(), 0);
  std::vector<double> bias_values(static_cast<size_t>(classes), 0.0);
  double lowest = std::numeric_limits<double>::infinity();
  for (int64_t c : present) {
    double norm2 = 0.0;
    for (int64_t j = 0; j < features; ++j) {
      kernel.data<float>()[c * features + j] = static_cast<float>(scale * means[c][j]);
      norm2 += means[c][j] * means[c][j];
    }
    bias_values[c] = -scale * norm2 / 2;
    lowest = std::min(lowest, bias_values[c]);
  }
  for (int64_t c = 0; c < classes; ++c) {
    if (totals[c] <= 0) bias_values[c] = lowest - 10.0 - scale * distance_max;
    bias.data<float>()[c] = static_cast<float>(bias_values[c]);
  }
  for (const StateSpec& spec : metadata.state) {
    if (spec.role == contract::kRoleSlot && (spec.of == kernel_spec->name || spec.of == bias_spec->name)) {
      std::fill(state.at(spec.name).bytes.begin(), state.at(spec.name).bytes.end(), 0);
    }
  }
  model.SetState(state);
}

}  // namespace tflite_transfer
