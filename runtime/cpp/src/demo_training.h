// The demo's epoch loop. Without a fixed batch: each epoch's samples in batches of batch_size
// (the last one smaller), the epoch loss weighted by batch size, as the Python runtime's fit.
// With a fixed batch B (runtime/SPEC.md#fixed-batches): the per-epoch orders are concatenated into one
// stream cut into B-sized batches, so every sample is seen equally often, nothing is padded
// and nothing dropped for good; an epoch's loss is the mean over the batches that ended in it.
#ifndef TFLITE_TRANSFER_DEMO_TRAINING_H_
#define TFLITE_TRANSFER_DEMO_TRAINING_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "tensor.h"
#include "transfer_model.h"

namespace tflite_transfer {

struct TrainingPlan {
  int64_t epochs = 10;
  int64_t batch_size = 8;                 // used when fixed_batch is unset
  std::optional<int64_t> fixed_batch;     // the model's fixed batch of the signature trained
  bool on_images = false;                 // train_images instead of train
  std::optional<uint64_t> shuffle_seed;   // per-epoch random orders; unset: file order
};

// The order of the samples in each epoch: file order, or seeded Fisher-Yates permutations
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

// How many optimizer steps TrainEpochs takes for `num_samples` samples (saturating: never
// more than INT64_MAX).
int64_t PlannedSteps(int64_t num_samples, const TrainingPlan& plan);

// Trains and prints "epoch e/E loss L" per epoch; returns the epoch losses (NaN for an epoch
// in which no fixed batch ended). A non-finite loss stops training with a TransferError.
std::vector<double> TrainEpochs(TransferModel& model, const Tensor& samples, const Tensor& labels,
                                const TrainingPlan& plan);

// Rows of a batch-first tensor, in the order given.
Tensor GatherRows(const Tensor& tensor, const std::vector<int64_t>& rows);

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_DEMO_TRAINING_H_
