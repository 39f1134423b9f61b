// Training that goes wrong without a NaN, as runtime/training_watch.py has it
// (runtime/SPEC.md#training): the learning rate that is stable for given features,
// and the watch Fit keeps over its epoch losses.
//
// Stable rate: for one sample with x~ = [x, 1] the Hessian of the loss in a dense layer's
// weights is A (x) x~x~^T, A's eigenvalues at most 1/2 (softmax cross-entropy) or 2/k (mean
// squared error over k outputs), so gradient descent is stable below
//   softmax cross-entropy + SGD: 4 / (1 + max |x|^2);  mse + SGD: k / (1 + max |x|^2);
// heavy-ball momentum beta: (1 + beta) times that; adaptive optimizers (Adam): no such bound.
// Watch: an epoch whose mean loss is above kRise x the best so far, above the first step's loss
// and, for a classifier, above the loss of a uniform guess (ln K for K classes) has diverged
// (float32 stays finite long after the weights are useless: loss 134 -> 6,415 in 25 steps on
// features with |x|^2 ~ 1e7). The ln K floor keeps a nearly perfect start (an imprinted head,
// loss ~0.01) from being stopped by one noisy epoch; a diverging classifier passes it within steps.
#ifndef TFLITE_TRANSFER_TRAINING_WATCH_H_
#define TFLITE_TRANSFER_TRAINING_WATCH_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "checkpoint.h"
#include "tensor.h"

namespace tflite_transfer {

// Converging runs measured rose at most 1.24x over their best epoch (2.7x at 16x the bound).
inline constexpr double kRise = 3.0;

// The largest stable learning rate of a single dense layer trained on features whose largest
// squared norm is `max_norm2`; nullopt for optimizers other than sgd and momentum.
std::optional<double> StableLearningRate(double max_norm2, const std::string& loss, int64_t num_outputs,
                                         const std::string& optimizer, double momentum);

// max_i |x_i|^2 over the rows of float32 bottlenecks [n, D], summed in double (float32 squares
// overflow near |x| ~ 1e19); 0 for no rows.
double LargestNorm2(const Tensor& bottlenecks);

// Per-epoch losses of one Fit call and the state of the best epoch. Epoch 0 stands for the
// weights training started from, its loss the first step's (taken before that step's update);
// epochs whose mean is NaN (no batch ended in them) are skipped.
class LossWatch {
 public:
  // `chance_loss`: a classifier's loss at a uniform guess, ln K (0: no floor).
  LossWatch(TensorMap start_state, double chance_loss)
      : chance_loss_(chance_loss), best_state_(std::move(start_state)) {}
  void FirstStep(double loss);
  // Records epoch `epoch` (1-based) with the state at its end; whether it diverged.
  bool Diverged(int64_t epoch, double loss, const TensorMap& state);

  std::optional<double> start_loss() const { return start_loss_; }
  double best_loss() const { return best_loss_; }
  int64_t best_epoch() const { return best_epoch_; }
  const TensorMap& best_state() const { return best_state_; }

 private:
  double chance_loss_;
  std::optional<double> start_loss_;
  double best_loss_ = std::numeric_limits<double>::infinity();
  int64_t best_epoch_ = 0;
  TensorMap best_state_;
};

// One line in the Python runtime's words and figures (training_watch.divergence_message): what
// rose, where the weights went back to, and the rate that would be stable.
std::string DivergenceMessage(int64_t epoch, double loss, const LossWatch& watch, std::optional<double> learning_rate,
                              std::optional<double> bound, double max_norm2, int64_t samples);

// Python's format(value, f".{precision}g") (C's %g agrees with it for doubles).
std::string FormatG(double value, int precision);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_TRAINING_WATCH_H_
