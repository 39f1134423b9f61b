#include "demo_training.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "errors.h"

namespace tflite_transfer {

EpochOrders::EpochOrders(int64_t num_samples, std::optional<uint64_t> seed)
    : order_(static_cast<size_t>(num_samples)), seed_(seed) {
  std::iota(order_.begin(), order_.end(), 0);
}

const std::vector<int64_t>& EpochOrders::Next() {
  if (!seed_) return order_;
  // Fisher-Yates with our own index draws (std::shuffle's algorithm is implementation-defined).
  std::mt19937_64 generator(*seed_ + state_++);
  std::iota(order_.begin(), order_.end(), 0);
  for (size_t index = order_.size(); index > 1; --index) {
    size_t other = static_cast<size_t>(generator() % index);
    std::swap(order_[index - 1], order_[other]);
  }
  return order_;
}

BatchStream::BatchStream(int64_t num_samples, int64_t batch, std::optional<uint64_t> seed)
    : num_samples_(num_samples), batch_(batch), orders_(num_samples, seed) {}

std::vector<int64_t> BatchStream::NextBatch() {
  std::vector<int64_t> rows;
  while (static_cast<int64_t>(rows.size()) < batch_) {
    if (epoch_ < 0 || position_in_epoch_ == num_samples_) {
      current_ = orders_.Next();
      position_in_epoch_ = 0;
      ++epoch_;
    }
    rows.push_back(current_[static_cast<size_t>(position_in_epoch_++)]);
  }
  last_epoch_ = epoch_;
  return rows;
}

Tensor GatherRows(const Tensor& tensor, const std::vector<int64_t>& rows) {
  Tensor gathered = tensor;
  gathered.shape[0] = static_cast<int64_t>(rows.size());
  size_t row_bytes = tensor.bytes.size() / static_cast<size_t>(tensor.shape[0]);
  gathered.bytes.resize(rows.size() * row_bytes);
  for (size_t index = 0; index < rows.size(); ++index) {
    std::memcpy(gathered.bytes.data() + index * row_bytes,
                tensor.bytes.data() + static_cast<size_t>(rows[index]) * row_bytes, row_bytes);
  }
  return gathered;
}

namespace {

float Step(TransferModel& model, const Tensor& samples, const Tensor& labels, bool on_images, int64_t step) {
  float loss = on_images ? model.TrainImages(samples, labels) : model.Train(samples, labels);
  if (!std::isfinite(loss)) {
    throw TransferError("training diverged: the loss of step " + std::to_string(step) + " is " +
                        (std::isnan(loss) ? "NaN" : "infinite") + "; lower the learning rate "
                        "(--learning_rate) and restore a checkpoint or --initialize");
  }
  return loss;
}

void PrintEpoch(int64_t epoch, int64_t epochs, double loss, const std::string& note = "") {
  if (std::isnan(loss)) {
    std::printf("epoch %lld/%lld loss n/a (%s)\n", static_cast<long long>(epoch), static_cast<long long>(epochs),
                note.c_str());
  } else {
    std::printf("epoch %lld/%lld loss %.6f\n", static_cast<long long>(epoch), static_cast<long long>(epochs), loss);
  }
  std::fflush(stdout);
}

}  // namespace

int64_t PlannedSteps(int64_t num_samples, const TrainingPlan& plan) {
  // Without a fixed batch every epoch takes ceil(n / batch_size) steps; with one, the stream
  // of epochs * n samples is cut into floor(epochs * n / B) batches.
  const unsigned __int128 samples = static_cast<unsigned __int128>(plan.epochs) * static_cast<uint64_t>(num_samples);
  const unsigned __int128 steps =
      plan.fixed_batch ? samples / static_cast<uint64_t>(*plan.fixed_batch)
                       : static_cast<unsigned __int128>(plan.epochs) *
                             ((static_cast<uint64_t>(num_samples) + plan.batch_size - 1) / plan.batch_size);
  return steps > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(steps);
}

std::vector<double> TrainEpochs(TransferModel& model, const Tensor& samples, const Tensor& labels,
                                const TrainingPlan& plan) {
  const int64_t count = samples.shape.at(0);
  std::vector<double> losses;
  int64_t step = 0;
  if (!plan.fixed_batch) {
    EpochOrders orders(count, plan.shuffle_seed);
    for (int64_t epoch = 1; epoch <= plan.epochs; ++epoch) {
      const std::vector<int64_t>& order = orders.Next();
      double total = 0;
      for (int64_t begin = 0; begin < count; begin += plan.batch_size) {
        std::vector<int64_t> rows(order.begin() + begin, order.begin() + std::min(begin + plan.batch_size, count));
        float loss = Step(model, GatherRows(samples, rows), GatherRows(labels, rows), plan.on_images, ++step);
        total += static_cast<double>(loss) * static_cast<double>(rows.size());
      }
      losses.push_back(total / static_cast<double>(count));
      PrintEpoch(epoch, plan.epochs, losses.back());
    }
    return losses;
  }
  // Batch k ends in epoch floor(((k + 1) B - 1) / n); training stops after the last batch
  // that ends within the requested epochs (the rest of that epoch waits for a later run).
  const int64_t batch = *plan.fixed_batch;
  const int64_t total_batches = plan.epochs * count / batch;
  BatchStream stream(count, batch, plan.shuffle_seed);
  double total = 0;
  int64_t batches_in_epoch = 0, epoch = 0;
  auto finish_epoch = [&]() {
    losses.push_back(batches_in_epoch ? total / static_cast<double>(batches_in_epoch)
                                      : std::numeric_limits<double>::quiet_NaN());
    PrintEpoch(epoch + 1, plan.epochs, losses.back(),
               "no batch ended in this epoch: fixed batch " + std::to_string(batch) + " > " +
               std::to_string(count) + " samples");
    total = 0, batches_in_epoch = 0, ++epoch;
  };
  for (int64_t index = 0; index < total_batches; ++index) {
    std::vector<int64_t> rows = stream.NextBatch();
    while (stream.epoch_of_last_sample() > epoch) finish_epoch();
    total += Step(model, GatherRows(samples, rows), GatherRows(labels, rows), plan.on_images, ++step);
    ++batches_in_epoch;
  }
  while (epoch < plan.epochs) finish_epoch();
  return losses;
}

}  // namespace tflite_transfer
