#include "training.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "errors.h"
#include "imprint.h"
#include "model_inputs.h"
#include "training_watch.h"

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

// Stops the epoch loop with a diverged status (thrown and caught inside Fit only).
struct Diverged {
  std::string message;
};

// One Fit call's watch over its steps and epochs: NaN/Inf losses and head states, and the
// rising mean loss (training_watch.h); every stop restores a state first.
class FitWatch {
 public:
  FitWatch(TransferModel& model, const TrainingPlan& plan, std::optional<double> bound, double max_norm2, int64_t samples)
      : model_(model), plan_(plan), bound_(bound), max_norm2_(max_norm2), samples_(samples),
        good_state_(model.GetState()),
        watch_(good_state_, model.metadata().classifies() ? std::log(static_cast<double>(model.metadata().num_outputs)) : 0.0) {}

  float Step(const Tensor& samples, const Tensor& labels) {
    const float loss = plan_.on_images ? model_.TrainImages(samples, labels) : model_.Train(samples, labels);
    if (!std::isfinite(loss)) RollBack(std::string("the loss became ") + (std::isnan(loss) ? "nan" : loss > 0 ? "inf" : "-inf"));
    watch_.FirstStep(loss);
    return loss;
  }

  void EndEpoch(double loss) {
    losses_.push_back(loss);
    const int64_t epoch = static_cast<int64_t>(losses_.size());
    if (plan_.on_epoch) plan_.on_epoch(epoch, plan_.epochs, loss);
    TensorMap state = model_.GetState();
    std::string bad;
    for (const std::string& name : NonFiniteEntries(state, model_.metadata().state)) bad += (bad.empty() ? "" : ", ") + name;
    if (!bad.empty()) {
      losses_.pop_back();  // as Python's: the losses of the epochs before this one
      RollBack(bad + " became NaN/Inf");
    }
    good_state_ = std::move(state);
    if (!watch_.Diverged(epoch, loss, good_state_)) return;
    model_.SetState(watch_.best_state());
    std::optional<double> rate;
    for (const StateSpec& spec : model_.metadata().state) {
      const Tensor& value = watch_.best_state().at(spec.name);
      if (spec.role == contract::kRoleLearningRate && value.dtype == DType::kFloat32) rate = value.data<float>()[0];
    }
    throw Diverged{DivergenceMessage(epoch, loss, watch_, rate, bound_, max_norm2_, samples_)};
  }

  std::vector<double> losses() const { return losses_; }

 private:
  // Back to the end of the last good epoch (Python's TransferModel._roll_back).
  [[noreturn]] void RollBack(const std::string& what) {
    model_.SetState(good_state_);
    const std::string advice = bound_ ? std::string("lower the learning rate (") + contract::kSetLearningRate +
                                            "; stable for these samples: below " + FormatG(*bound_, 3) + ")"
                                      : std::string("lower the learning rate (") + contract::kSetLearningRate + ")";
    throw Diverged{"training diverged in epoch " + std::to_string(losses_.size() + 1) + ": " + what +
                   "; the weights were rolled back to the end of the last good epoch; " + advice + " or call " +
                   contract::kInitialize};
  }

  TransferModel& model_;
  const TrainingPlan& plan_;
  std::optional<double> bound_;
  double max_norm2_;
  int64_t samples_;
  TensorMap good_state_;
  LossWatch watch_;
  std::vector<double> losses_;
};

void RunEpochs(FitWatch& watch, const Tensor& samples, const Tensor& labels, const TrainingPlan& plan,
               std::optional<int64_t> fixed_batch) {
  const int64_t count = samples.shape.at(0);
  if (!fixed_batch) {
    EpochOrders orders(count, plan.shuffle_seed);
    for (int64_t epoch = 1; epoch <= plan.epochs; ++epoch) {
      const std::vector<int64_t>& order = orders.Next();
      double total = 0;
      for (int64_t begin = 0; begin < count; begin += plan.batch_size) {
        std::vector<int64_t> rows(order.begin() + begin, order.begin() + std::min(begin + plan.batch_size, count));
        const float loss = watch.Step(GatherRows(samples, rows), GatherRows(labels, rows));
        total += static_cast<double>(loss) * static_cast<double>(rows.size());
      }
      watch.EndEpoch(total / static_cast<double>(count));
    }
    return;
  }
  // Batch k ends in epoch floor(((k + 1) B - 1) / n); training stops after the last batch
  // that ends within the requested epochs (the rest of that epoch waits for a later run).
  const int64_t batch = *fixed_batch;
  const int64_t total_batches = plan.epochs * count / batch;
  BatchStream stream(count, batch, plan.shuffle_seed);
  double total = 0;
  int64_t batches_in_epoch = 0, epoch = 0;
  auto finish_epoch = [&]() {
    const double mean = batches_in_epoch ? total / static_cast<double>(batches_in_epoch)
                                         : std::numeric_limits<double>::quiet_NaN();
    total = 0, batches_in_epoch = 0, ++epoch;
    watch.EndEpoch(mean);
  };
  for (int64_t index = 0; index < total_batches; ++index) {
    std::vector<int64_t> rows = stream.NextBatch();
    while (stream.epoch_of_last_sample() > epoch) finish_epoch();
    total += watch.Step(GatherRows(samples, rows), GatherRows(labels, rows));
    ++batches_in_epoch;
  }
  while (epoch < plan.epochs) finish_epoch();
}

}  // namespace

int64_t PlannedSteps(int64_t num_samples, const TrainingPlan& plan, std::optional<int64_t> fixed_batch) {
  // Without a fixed batch every epoch takes ceil(n / batch_size) steps; with one, the stream
  // of epochs * n samples is cut into floor(epochs * n / B) batches.
  const unsigned __int128 samples = static_cast<unsigned __int128>(plan.epochs) * static_cast<uint64_t>(num_samples);
  const unsigned __int128 steps =
      fixed_batch ? samples / static_cast<uint64_t>(*fixed_batch)
                  : static_cast<unsigned __int128>(plan.epochs) *
                        ((static_cast<uint64_t>(num_samples) + plan.batch_size - 1) / plan.batch_size);
  return steps > static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(steps);
}

FitResult Fit(TransferModel& model, const Tensor& samples, const Tensor& labels, const TrainingPlan& given) {
  TrainingPlan plan = given;
  const ModelMetadata& metadata = model.metadata();
  if (plan.epochs < 1 || plan.batch_size < 1) {
    throw InvalidInputError("fit: epochs and batch_size must be integers >= 1, got " + std::to_string(plan.epochs) +
                            " and " + std::to_string(plan.batch_size));
  }
  const std::optional<int64_t> fixed = metadata.FixedBatch(plan.on_images ? contract::kTrainImages : contract::kTrain);
  if (fixed && plan.batch_size != *fixed && plan.batch_size != kDefaultBatchSize) {
    throw InvalidInputError("fit: batch_size " + std::to_string(plan.batch_size) + ", but this model trains on fixed "
                            "batches of " + std::to_string(*fixed) + "; pass batch_size=" + std::to_string(*fixed));
  }
  if (fixed) plan.batch_size = *fixed;
  const Tensor checked = plan.on_images ? CheckInput(samples, model.names().input, model.input_spec()) : samples;
  if (!plan.on_images) CheckBottlenecks(samples, metadata.bottleneck_size);
  const int64_t count = checked.shape.at(0);
  CheckLabels(labels, count, metadata);
  CheckStepsLeft(model.StepCounter(), PlannedSteps(count, plan, fixed));
  if (plan.imprint == ImprintChoice::kAlways && !CanImprint(metadata)) {
    throw UnsupportedModelError("fit(imprint=True) needs a single-layer softmax head (--head=softmax)");
  }
  if (plan.imprint == ImprintChoice::kAlways && plan.on_images) {
    throw InvalidInputError("fit: imprinting needs bottlenecks; train on bottlenecks, or do not ask to imprint");
  }

  FitResult result;
  double max_norm2 = 0;
  if (!plan.on_images) {
    max_norm2 = LargestNorm2(checked);
    result.stable_learning_rate = StableLearningRate(max_norm2, metadata.loss, metadata.num_outputs,
                                                     metadata.optimizer, metadata.momentum);
  }
  const bool fresh = plan.imprint == ImprintChoice::kWhenFresh && !plan.on_images && CanImprint(metadata) &&
                     model.HeadHoldsCompiledWeights();
  if (plan.imprint == ImprintChoice::kAlways || fresh) {
    Imprint(model, checked, labels);
    result.imprinted = true;
  }
  FitWatch watch(model, plan, result.stable_learning_rate, max_norm2, count);
  try {
    RunEpochs(watch, checked, labels, plan, fixed);
  } catch (const Diverged& diverged) {
    result.status = FitStatus::kTrainingDiverged;
    result.message = diverged.message;
  }
  result.losses = watch.losses();
  return result;
}

}  // namespace tflite_transfer
