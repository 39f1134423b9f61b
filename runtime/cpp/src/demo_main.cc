// tflite_transfer_demo: trains a compiled tflite-transfer model from .npy files with the C++
// runtime, prints the loss of each epoch and the accuracy, and saves a checkpoint that the
// Python runtime restores (and the other way round).
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "checkpoint.h"
#include "demo_checks.h"
#include "errors.h"
#include "model_inputs.h"
#include "npy.h"
#include "tensor.h"
#include "text.h"
#include "training.h"
#include "training_watch.h"
#include "transfer_model.h"
#include "tensorflow/lite/c/c_api.h"

namespace {

using tflite_transfer::DType;
using tflite_transfer::InvalidInputError;
using tflite_transfer::Tensor;
using tflite_transfer::TransferModel;

constexpr char kUsage[] = R"(usage: tflite_transfer_demo --model MODEL.tflite [options]
       tflite_transfer_demo --check_checkpoint FILE [--allow_version_1]
       tflite_transfer_demo --check_model --model MODEL.tflite [--skip_digest_check]
       tflite_transfer_demo --check_metadata FILE.json

Trains the head of a compiled tflite-transfer model with the stock TFLite C API and saves a
checkpoint in the format the Python runtime reads (runtime/SPEC.md#checkpoint-file-format).
The --check_* modes only read: they validate the file with the runtime's reader and print
what it parsed as one JSON line (checkpoint: metadata and each tensor's dtype, shape and
sha256; model/metadata: the typed metadata record).

  --model PATH          compiled model (compile-transfer output)                 [required]
  --bottlenecks PATH    training bottlenecks, float32 [n, D] .npy
  --images PATH         training inputs .npy [n, ...] (images, audio, any tensor) in the
                        model's input shape; any numeric dtype for a float input, else
                        the input's own; their bottlenecks come from `load` (or train on
                        them with --train_on=images)
  --labels PATH         training labels .npy: class ids [n] (any integer dtype; encoded as
                        one-hot rows for a one-hot model), one-hot or soft rows [n, k], or
                        float targets [n, k] for --loss=mse models
  --epochs N            passes over the training data                             [50]
  --batch_size N        samples per `train` step; a model with a fixed batch uses
                        its own (then batches come from a stream of per-epoch
                        orders, every sample equally often)                       [32]
  --shuffle_seed N      a random order per epoch from this seed                   [file order]
  --learning_rate LR    call `set_learning_rate` first                            [model's]
  --no_imprint          train a fresh single-layer softmax head from its compiled
                        weights; by default it is imprinted (nearest class mean) first
  --train_on WHAT       bottlenecks (`train`) or images (`train_images`)          [bottlenecks]
  --restore PATH        restore this checkpoint first (validated; a bad one changes nothing)
  --initialize          call `initialize` first (after --restore): the compiled initial weights
  --checkpoint PATH     save the state here at the end (atomic write)
  --test_images PATH    images for the accuracy (`infer`); default: the --images
  --test_labels PATH    their class ids; default: the --labels
  --save_bottlenecks P  write the bottlenecks `load` computed for --images to P (.npy)
  --num_threads N       interpreter threads                                       [1]
  --skip_digest_check   do not check the model's digest (only for files verified
                        elsewhere, e.g. a signed download)
  --allow_version_1     accept checkpoints of format version 1 (no checksum)

Training stops, rolled back, when it diverges: a NaN/Inf loss, or an epoch's mean loss above
3x the best so far and above the first step's (the line names the stable learning rate).
Exit status 0 on success, 1 with one "error: ..." line on stderr for a bad model, input or
checkpoint or a diverged training, 2 for a bad command line.
)";

[[noreturn]] void UsageError(const std::string& problem) {
  std::fprintf(stderr, "error: %s (see --help)\n", problem.c_str());
  std::exit(2);
}

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  static const char* kValued[] = {"model", "bottlenecks", "images", "labels", "epochs", "batch_size",
                                  "learning_rate", "train_on", "restore", "checkpoint", "test_images",
                                  "test_labels", "num_threads", "save_bottlenecks", "shuffle_seed",
                                  "check_checkpoint", "check_metadata"};
  static const char* kSwitches[] = {"initialize", "skip_digest_check", "allow_version_1", "check_model", "no_imprint"};
  std::map<std::string, std::string> flags;
  for (int index = 1; index < argc; ++index) {
    std::string argument = argv[index];
    if (argument == "--help" || argument == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (argument.rfind("--", 0) != 0) UsageError("unexpected argument " + tflite_transfer::Quoted(argument));
    std::string name = argument.substr(2), value;
    size_t equals = name.find('=');
    if (equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    }
    bool is_switch = false, known = false;
    for (const char* switch_name : kSwitches) is_switch = is_switch || name == switch_name;
    if (is_switch && equals == std::string::npos) {
      flags[name] = "1";
      continue;
    }
    for (const char* valued : kValued) known = known || name == valued;
    if (!known) UsageError("unknown flag --" + tflite_transfer::Printable(name));
    if (equals == std::string::npos) {
      if (index + 1 >= argc) UsageError("--" + name + " needs a value");
      value = argv[++index];
    }
    flags[name] = value;
  }
  return flags;
}

// An integer flag in [minimum, maximum]; anything else (including a value strtoll would clamp)
// is a usage error naming the flag.
int64_t ParseInt(const std::map<std::string, std::string>& flags, const std::string& name, int64_t fallback,
                 int64_t minimum, int64_t maximum) {
  auto found = flags.find(name);
  if (found == flags.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(found->second.c_str(), &end, 10);
  if (found->second.empty() || *end != '\0' || errno == ERANGE || value < minimum || value > maximum) {
    UsageError("--" + name + " must be an integer from " + std::to_string(minimum) + " to " +
               std::to_string(maximum) + ", got " + tflite_transfer::Quoted(found->second));
  }
  return value;
}

std::optional<std::string> Flag(const std::map<std::string, std::string>& flags, const std::string& name) {
  auto found = flags.find(name);
  return found == flags.end() ? std::nullopt : std::optional<std::string>(found->second);
}

// Labels as the model takes them: int32 class ids (from any integer .npy), float32 targets, or
// float32 one-hot rows (from rows, or from class ids encoded here).
Tensor LabelsFor(const TransferModel& model, const Tensor& labels, const std::string& path) {
  const tflite_transfer::ModelMetadata& metadata = model.metadata();
  const bool integers = labels.dtype != DType::kFloat32 && labels.dtype != DType::kFloat64 &&
                        labels.dtype != DType::kFloat16 && labels.dtype != DType::kBool;
  if (metadata.label.dtype == DType::kFloat32 && !(metadata.label.kind == tflite_transfer::contract::kLabelOneHot &&
                                                   integers && labels.shape.size() == 1)) {
    if (integers || labels.dtype == DType::kBool) {
      throw InvalidInputError(path + ": float targets expected, got " + labels.Describe());
    }
    return labels.dtype == DType::kFloat32 ? labels : tflite_transfer::ConvertToFloat(labels, DType::kFloat32);
  }
  if (!integers) throw InvalidInputError(path + ": labels must be integer class ids, got " + labels.Describe());
  const bool one_hot = metadata.label.kind == tflite_transfer::contract::kLabelOneHot;
  const int64_t count = labels.shape.empty() ? 1 : labels.shape[0], classes = model.num_classes();
  Tensor converted = one_hot ? Tensor::Zeros(DType::kFloat32, {count, classes}) : Tensor::Zeros(DType::kInt32, labels.shape);
  for (int64_t i = 0; i < labels.num_elements(); ++i) {
    const double value = tflite_transfer::ElementAsDouble(labels, i);
    if (value < 0 || value >= static_cast<double>(classes)) {
      throw InvalidInputError(path + ": label " + tflite_transfer::FormatG(value, 20) + " is outside [0, " +
                              std::to_string(classes) + ")");
    }
    if (one_hot) {
      converted.data<float>()[i * classes + static_cast<int64_t>(value)] = 1.0f;
    } else {
      converted.data<int32_t>()[i] = static_cast<int32_t>(value);
    }
  }
  return converted;
}

// The true class of row `row` of labels as LabelsFor returns them (one-hot rows: the largest).
int64_t TrueClass(const Tensor& labels, int64_t row) {
  if (labels.dtype == DType::kInt32) return labels.data<int32_t>()[row];
  const int64_t classes = labels.shape.at(1);
  const float* values = labels.data<float>() + row * classes;
  int64_t best = 0;
  for (int64_t c = 1; c < classes; ++c) best = values[c] > values[best] ? c : best;
  return best;
}

Tensor AsFloat32(const Tensor& tensor, const std::string& path) {
  if (tensor.dtype == DType::kFloat32) return tensor;
  if (tensor.dtype != DType::kFloat64) throw InvalidInputError(path + ": bottlenecks must be float32, got " + tensor.Describe());
  Tensor converted = Tensor::Zeros(DType::kFloat32, tensor.shape);
  for (int64_t i = 0; i < tensor.num_elements(); ++i) {
    converted.data<float>()[i] = static_cast<float>(tensor.data<double>()[i]);
  }
  return converted;
}

int64_t Step(TransferModel& model) { return model.StepCounter(); }

// The --check_* modes: read with the runtime's readers, print what they parsed.
int Check(const std::map<std::string, std::string>& flags) {
  if (auto path = Flag(flags, "check_checkpoint")) {
    tflite_transfer::CheckpointReadOptions options;
    options.allow_version_1 = flags.count("allow_version_1") > 0;
    std::printf("%s\n", tflite_transfer::DescribeCheckpoint(tflite_transfer::ReadCheckpoint(*path, options)).c_str());
  } else if (auto path = Flag(flags, "check_metadata")) {
    std::printf("%s\n", tflite_transfer::DescribeMetadata(tflite_transfer::ReadMetadataJsonFile(*path)).c_str());
  } else {
    std::optional<std::string> model_path = Flag(flags, "model");
    if (!model_path) UsageError("--check_model needs --model");
    tflite_transfer::OpenOptions options;
    options.verify_digest = !flags.count("skip_digest_check");
    auto model = TransferModel::Open(*model_path, options);
    std::printf("%s\n", tflite_transfer::DescribeModel(*model).c_str());
  }
  return 0;
}

int Run(const std::map<std::string, std::string>& flags) {
  if (flags.count("check_checkpoint") || flags.count("check_metadata") || flags.count("check_model")) {
    return Check(flags);
  }
  std::optional<std::string> model_path = Flag(flags, "model");
  if (!model_path) UsageError("--model is required");
  // Every epoch takes at least one optimizer step, and the step counter stops at kMaxStep.
  const int64_t epochs = ParseInt(flags, "epochs", tflite_transfer::kDefaultEpochs, 0, tflite_transfer::contract::kMaxStep);
  const int64_t batch_size = ParseInt(flags, "batch_size", tflite_transfer::kDefaultBatchSize, 1,
                                      std::numeric_limits<int32_t>::max());
  const int64_t num_threads = ParseInt(flags, "num_threads", 1, 1, 1024);
  std::optional<uint64_t> shuffle_seed;
  if (flags.count("shuffle_seed")) {
    shuffle_seed = static_cast<uint64_t>(ParseInt(flags, "shuffle_seed", 0, 0, std::numeric_limits<int64_t>::max()));
  }
  std::string train_on = Flag(flags, "train_on").value_or("bottlenecks");
  if (train_on != "bottlenecks" && train_on != "images") UsageError("--train_on must be bottlenecks or images");
  if (Flag(flags, "bottlenecks") && Flag(flags, "images")) UsageError("pass --bottlenecks or --images, not both");
  bool has_data = Flag(flags, "bottlenecks") || Flag(flags, "images");
  if (epochs > 0 && (!has_data || !Flag(flags, "labels"))) {
    UsageError("training (--epochs > 0) needs --labels and --bottlenecks or --images");
  }
  if (train_on == "images" && epochs > 0 && !Flag(flags, "images")) UsageError("--train_on=images needs --images");

  tflite_transfer::OpenOptions open_options;
  open_options.num_threads = static_cast<int>(num_threads);
  open_options.verify_digest = !flags.count("skip_digest_check");
  auto model = TransferModel::Open(*model_path, open_options);
  const std::string shown_model = tflite_transfer::Printable(*model_path);
  const tflite_transfer::ModelMetadata& metadata = model->metadata();
  const tflite_transfer::InputSpec& input = model->input_spec();
  const std::string range = input.range ? ", values in [" + tflite_transfer::FormatG(input.range->first, 6) + ", " +
                                              tflite_transfer::FormatG(input.range->second, 6) + "]" : "";
  std::printf("model %s: TFLite %s, %s %s %s %s%s, bottleneck %lld, %lld outputs, %s labels, %zu state tensors%s%s\n",
              shown_model.c_str(), TfLiteVersion(), input.kind.c_str(), tflite_transfer::Quoted(model->names().input).c_str(),
              tflite_transfer::NumpyName(input.dtype), tflite_transfer::ShapeString(input.shape).c_str(), range.c_str(),
              static_cast<long long>(model->bottleneck_size()), static_cast<long long>(model->num_classes()),
              metadata.label.kind.c_str(), metadata.state.size(), metadata.stateful() ? " (a stateful base)" : "",
              model->digest_checked() ? ", digest ok" : "");
  if (metadata.image_batch || metadata.train_batch) {
    std::printf("fixed batches: images %s, train %s\n",
                metadata.image_batch ? std::to_string(*metadata.image_batch).c_str() : "any",
                metadata.train_batch ? std::to_string(*metadata.train_batch).c_str() : "any");
  }

  if (auto restore = Flag(flags, "restore")) {
    tflite_transfer::CheckpointReadOptions read_options;
    read_options.allow_version_1 = flags.count("allow_version_1") > 0;
    model->RestoreCheckpoint(*restore, read_options);
    std::printf("restored %s (step %lld)\n", tflite_transfer::Printable(*restore).c_str(),
                static_cast<long long>(Step(*model)));
  }
  if (flags.count("initialize")) std::printf("initialized (step %d)\n", model->Initialize());
  if (auto learning_rate = Flag(flags, "learning_rate")) {
    char* end = nullptr;
    float value = std::strtof(learning_rate->c_str(), &end);
    if (learning_rate->empty() || *end != '\0') UsageError("--learning_rate must be a number");
    model->SetLearningRate(value);
  }

  std::optional<Tensor> images, bottlenecks, labels;
  if (auto path = Flag(flags, "images")) images = tflite_transfer::ReadNpy(*path);
  if (auto path = Flag(flags, "bottlenecks")) bottlenecks = AsFloat32(tflite_transfer::ReadNpy(*path), *path);
  if (auto path = Flag(flags, "labels")) labels = LabelsFor(*model, tflite_transfer::ReadNpy(*path), *path);
  if (images && (train_on == "bottlenecks" || Flag(flags, "save_bottlenecks"))) {
    bottlenecks = model->Load(*images);  // one base pass per image, cached for every epoch
  }
  if (auto path = Flag(flags, "save_bottlenecks")) {
    if (!images) UsageError("--save_bottlenecks needs --images");
    tflite_transfer::WriteNpy(*path, *bottlenecks);
  }
  const Tensor* samples = train_on == "images" ? &*images : bottlenecks ? &*bottlenecks : nullptr;
  int64_t num_samples = samples ? samples->shape.at(0) : 0;
  if (samples && labels && (labels->shape.empty() || labels->shape[0] != num_samples)) {
    throw InvalidInputError("--labels has " + tflite_transfer::ShapeString(labels->shape) + " for " +
                            std::to_string(num_samples) + " samples");
  }
  if (epochs > 0 && num_samples == 0) {
    const std::string data_flag = train_on == "images" || !Flag(flags, "bottlenecks") ? "images" : "bottlenecks";
    throw InvalidInputError("--" + data_flag + " " + tflite_transfer::Printable(*Flag(flags, data_flag)) +
                            " holds no samples (shape " +
                            tflite_transfer::ShapeString(samples ? samples->shape : tflite_transfer::Shape{}) +
                            "); nothing to train on: pass a file with at least one sample, or --epochs 0");
  }

  if (epochs > 0) {
    tflite_transfer::TrainingPlan plan;
    plan.epochs = epochs;
    plan.batch_size = batch_size;
    plan.on_images = train_on == "images";
    plan.shuffle_seed = shuffle_seed;
    plan.imprint = flags.count("no_imprint") ? tflite_transfer::ImprintChoice::kNever : tflite_transfer::ImprintChoice::kWhenFresh;
    const std::optional<int64_t> fixed = metadata.FixedBatch(plan.on_images ? tflite_transfer::contract::kTrainImages
                                                                            : tflite_transfer::contract::kTrain);
    if (fixed && flags.count("batch_size") && batch_size != *fixed) {
      UsageError("this model trains with a fixed batch of " + std::to_string(*fixed) +
                 "; drop --batch_size or pass --batch_size=" + std::to_string(*fixed));
    }
    if (fixed) plan.batch_size = *fixed;
    plan.on_epoch = [&](int64_t epoch, int64_t total, double loss) {
      if (std::isnan(loss)) {
        std::printf("epoch %lld/%lld loss n/a (no batch ended in this epoch: fixed batch %lld > %lld samples)\n",
                    static_cast<long long>(epoch), static_cast<long long>(total), static_cast<long long>(*fixed),
                    static_cast<long long>(num_samples));
      } else {
        std::printf("epoch %lld/%lld loss %.6f\n", static_cast<long long>(epoch), static_cast<long long>(total), loss);
      }
      std::fflush(stdout);
    };
    const tflite_transfer::FitResult fit = tflite_transfer::Fit(*model, *samples, *labels, plan);
    if (fit.imprinted) std::printf("imprinted the head from %lld samples before training\n", static_cast<long long>(num_samples));
    if (!fit.ok()) throw tflite_transfer::TransferError(fit.message);
  }

  std::optional<Tensor> test_images = images, test_labels = labels;
  if (auto path = Flag(flags, "test_images")) test_images = tflite_transfer::ReadNpy(*path);
  if (auto path = Flag(flags, "test_labels")) test_labels = LabelsFor(*model, tflite_transfer::ReadNpy(*path), *path);
  if (test_images && test_labels && model->metadata().classifies()) {
    Tensor probabilities = model->Infer(*test_images);
    int64_t classes = model->num_classes(), correct = 0, count = test_labels->shape.at(0);
    if (probabilities.shape.at(0) != count) throw InvalidInputError("test images and labels differ in count");
    for (int64_t row = 0; row < count; ++row) {
      const float* scores = probabilities.data<float>() + row * classes;
      int64_t best = 0;
      for (int64_t c = 1; c < classes; ++c) best = scores[c] > scores[best] ? c : best;
      correct += best == TrueClass(*test_labels, row);
    }
    std::printf("accuracy %.4f (%lld/%lld)\n", static_cast<double>(correct) / static_cast<double>(count),
                static_cast<long long>(correct), static_cast<long long>(count));
  } else {
    std::printf("accuracy n/a (`infer` takes images: pass --images or --test_images with labels)\n");
  }

  if (auto checkpoint = Flag(flags, "checkpoint")) {
    // The same extra metadata as the Python runtime's save_checkpoint, so files match byte for byte.
    model->SaveCheckpoint(*checkpoint, {{"num_samples_cached", std::to_string(num_samples)}});
    std::printf("saved %s (step %lld)\n", tflite_transfer::Printable(*checkpoint).c_str(),
                static_cast<long long>(Step(*model)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = ParseFlags(argc, argv);
  try {
    return Run(flags);
  } catch (const std::exception& error) {
    // Messages already escape what came from files; this guards the one-line contract for
    // anything else (Printable is idempotent).
    std::fprintf(stderr, "error: %s\n", tflite_transfer::Printable(error.what()).c_str());
    return 1;
  }
}
