// Training over given samples with the contract's guards, as the Python runtime's
// TransferModel.fit does (runtime/SPEC.md#training): 50 epochs of
// batches of 32 by default, a fresh single-layer softmax head imprinted first, and a watch that
// rolls a diverging run back to its best epoch and says so in one line.
//
// Without a fixed batch: each epoch's samples in batches of batch_size (the last one smaller),
// the epoch loss weighted by batch size. With a fixed batch B (runtime/SPEC.md#fixed-batches):
// the per-epoch orders are concatenated into one stream cut into B-sized batches, so every
// sample is seen equally often, nothing is padded and nothing dropped for good; an epoch's loss
// is the mean over the batches that ended in it (NaN when none did).
#ifndef TFLITE_TRANSFER_TRAINING_H_
#define TFLITE_TRANSFER_TRAINING_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tensor.h"
#include "transfer_model.h"

namespace tflite_transfer {

// Fit's defaults, as runtime/model.py's (chosen on three real bases: from an imprinted head, 50
// epochs of batches of 32 reach the nearest-class-mean probe or better).
inline constexpr int64_t kDefaultEpochs = 50;
inline constexpr int64_t kDefaultBatchSize = 32;

// Whether Fit imprints a single-layer softmax head first (imprint.h): kWhenFresh when its kernel
// and bias still equal the compiled initial weights bit for bit (TransferModel::
// HeadHoldsCompiledWeights), kAlways (refused for other heads), kNever.
enum class ImprintChoice { kWhenFresh, kAlways, kNever };

struct TrainingPlan {
  int64_t epochs = kDefaultEpochs;
  int64_t batch_size = kDefaultBatchSize;  // a model with a fixed batch trains on its own: then
                                           // only that batch or the default is accepted
  bool on_images = false;                  // train_images on inputs instead of train on bottlenecks
  std::optional<uint64_t> shuffle_seed;    // per-epoch random orders; unset: sample order
  ImprintChoice imprint = ImprintChoice::kWhenFresh;  // only when training on bottlenecks
  // Called after each epoch with (epoch, epochs, mean loss), before the divergence checks.
  std::function<void(int64_t, int64_t, double)> on_epoch;
};

enum class FitStatus { kOk, kTrainingDiverged };

struct FitResult {
  FitStatus status = FitStatus::kOk;
  std::vector<double> losses;      // mean loss of each epoch trained (NaN: no fixed batch ended in it)
  // kTrainingDiverged: one line in the Python runtime's words (TrainingDivergedError): the epoch,
  // the losses, where the weights went back to and, when known, the stable learning rate.
  std::string message;
  // The largest stable learning rate for the bottlenecks trained on (training_watch.h); none for
  // adaptive optimizers and for training on inputs.
  std::optional<double> stable_learning_rate;
  bool imprinted = false;          // the head was imprinted before the first step
  bool ok() const { return status == FitStatus::kOk; }
};

// Trains over `samples` (float32 bottlenecks [n, D], or the model's inputs with on_images) and
// their labels (as Train takes them). Everything is checked before the first step (counts,
// values, batch size, the step counter's room, the imprint choice: InvalidInputError or
// UnsupportedModelError, nothing changed). Divergence is a status, not an exception: a NaN/Inf
// loss or head state rolls back to the end of the last good epoch; an epoch whose mean loss is
// above 3x the best so far, above the first step's loss and (a classifier) above ln K rolls back
// to the best epoch (or the starting weights). Base state (role base_state) is never taken for
// divergence.
FitResult Fit(TransferModel& model, const Tensor& samples, const Tensor& labels, const TrainingPlan& plan = {});

// How many optimizer steps Fit takes for `num_samples` samples (saturating at INT64_MAX).
int64_t PlannedSteps(int64_t num_samples, const TrainingPlan& plan, std::optional<int64_t> fixed_batch);

// The order of the samples in each epoch: sample order, or seeded Fisher-Yates permutations
// (std::mt19937_64, so the same seed gives the same orders on every platform).
class EpochOrders {
 public:
  EpochOrders(int64_t num_samples, std::optional<uint64_t> seed);
  const std::vector<int64_t>& Next();  // the next epoch's order

 private:
  std::vector<int64_t> order_;
  std::optional<uint64_t> seed_;
  uint64_t state_ = 0;
};

// The sample indices of fixed batch `index` (batch k holds stream positions [kB, kB + B)),
// drawing epoch orders from `orders` as the stream needs them.
class BatchStream {
 public:
  BatchStream(int64_t num_samples, int64_t batch, std::optional<uint64_t> seed);
  std::vector<int64_t> NextBatch();
  int64_t epoch_of_last_sample() const { return last_epoch_; }  // of the batch just returned

 private:
  int64_t num_samples_, batch_;
  EpochOrders orders_;
  std::vector<int64_t> current_;
  int64_t position_in_epoch_ = 0, epoch_ = -1, last_epoch_ = -1;
};

// Rows of a batch-first tensor, in the order given.
Tensor GatherRows(const Tensor& tensor, const std::vector<int64_t>& rows);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_TRAINING_H_
