#include "training_watch.h"

#include <cmath>
#include <cstdio>

#include "contract.h"

namespace tflite_transfer {

std::optional<double> StableLearningRate(double max_norm2, const std::string& loss, int64_t num_outputs,
                                         const std::string& optimizer, double momentum) {
  const double augmented = max_norm2 + 1.0;
  // Only plain gradient steps scale with the features; adaptive optimizers (adam, adamw,
  // rmsprop, and any this runtime does not know) have no such bound.
  if ((optimizer != "sgd" && optimizer != "momentum") || !std::isfinite(augmented)) return std::nullopt;
  const double bound = (loss == "mse" ? static_cast<double>(num_outputs) : 4.0) / augmented;
  return optimizer == "momentum" ? bound * (1.0 + momentum) : bound;
}

double LargestNorm2(const Tensor& bottlenecks) {
  if (bottlenecks.shape.size() != 2 || bottlenecks.shape[0] == 0) return 0.0;
  const int64_t rows = bottlenecks.shape[0], features = bottlenecks.shape[1];
  double largest = 0.0;
  for (int64_t row = 0; row < rows; ++row) {
    double norm2 = 0.0;
    for (int64_t j = 0; j < features; ++j) {
      const double value = ElementAsDouble(bottlenecks, row * features + j);
      norm2 += value * value;
    }
    largest = std::max(largest, norm2);
  }
  return largest;
}

void LossWatch::FirstStep(double loss) {
  if (!start_loss_) start_loss_ = best_loss_ = loss;
}

bool LossWatch::Diverged(int64_t epoch, double loss, const TensorMap& state) {
  if (!std::isfinite(loss) || !start_loss_) return false;
  if (loss > kRise * best_loss_ && loss > *start_loss_ && loss > chance_loss_) return true;
  if (loss < best_loss_) {
    best_loss_ = loss;
    best_epoch_ = epoch;
    best_state_ = state;
  }
  return false;
}

std::string FormatG(double value, int precision) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*g", precision, value);
  return text;
}

std::string DivergenceMessage(int64_t epoch, double loss, const LossWatch& watch, std::optional<double> learning_rate,
                              std::optional<double> bound, double max_norm2, int64_t samples) {
  const std::string where = watch.best_epoch() == 0 ? "the weights training started from"
                                                    : "the end of epoch " + std::to_string(watch.best_epoch());
  const std::string rate = learning_rate ? "learning rate " + FormatG(*learning_rate, 3) : "the learning rate";
  std::string advice;
  if (bound) {
    advice = rate + " is too large for these features: the largest stable rate for them is " + FormatG(*bound, 3) +
             " (from max |x|^2 = " + FormatG(max_norm2, 4) + " over the " + std::to_string(samples) +
             " cached samples, runtime/SPEC.md#training): call " + contract::kSetLearningRate + "(" + FormatG(*bound, 2) +
             ") and fit again";
  } else {
    advice = "lower the learning rate" + (learning_rate ? " (now " + FormatG(*learning_rate, 3) + ")" : std::string()) +
             ", e.g. tenfold with " + contract::kSetLearningRate + ", and fit again";
  }
  return "training diverged in epoch " + std::to_string(epoch) + ": the mean loss rose to " + FormatG(loss, 4) +
         ", over " + FormatG(kRise, 6) + "x the best " + FormatG(watch.best_loss(), 4) + " and above the starting " +
         FormatG(watch.start_loss().value_or(loss), 4) + "; the weights were rolled back to " + where + "; " + advice;
}

}  // namespace tflite_transfer
