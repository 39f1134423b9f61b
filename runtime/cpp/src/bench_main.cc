// tflite_transfer_bench: the on-device benchmark of a compiled tflite-transfer model. Opens the
// model with the C++ runtime (TransferModel: digest, metadata and signature contract checked),
// times every signature on random inputs, and prints ONE JSON document on stdout, which the
// adb runner (benchmarks/android/) pulls and turns into a report. Built for Linux with Debian's
// TFLite and for Android with the NDK (BUILD.md, "On-device benchmark").
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "contract.h"
#include "errors.h"
#include "json.h"
#include "tensor.h"
#include "transfer_model.h"
#include "tensorflow/lite/c/c_api.h"

namespace {

using tflite_transfer::DType;
using tflite_transfer::JsonQuote;
using tflite_transfer::Tensor;
using tflite_transfer::TransferModel;
namespace contract = tflite_transfer::contract;

// Bump when a field of the JSON document changes name or meaning (the runner checks it).
constexpr int kFormatVersion = 1;

constexpr char kUsage[] = R"(usage: tflite_transfer_bench --model MODEL.tflite [options]

Times every signature of a compiled tflite-transfer model on random inputs and prints one JSON
document on stdout: load and infer at batch 1, train at the --train_batches on random
bottlenecks, train_images at batch 1, save and restore through a checkpoint file; then the
peak resident memory (VmHWM), the thread count and the TFLite runtime version.

  --model PATH          compiled model (compile-transfer output)                 [required]
  --runs N              timed runs per signature and batch (after 1 warm-up)     [20]
  --train_batches LIST  batch sizes of `train`, comma-separated                  [1,8,32]
  --num_threads N       interpreter threads                                      [1]
  --checkpoint PATH     checkpoint file for save/restore             [MODEL.bench.ckpt]
  --version             print the TFLite runtime version and exit (a load check)

Exit status 0 on success (a signature the model cannot run at some batch, e.g. a fixed batch,
is reported as "skipped" with the reason), 1 with one "error: ..." line on stderr for a bad
model or checkpoint, 2 for a bad command line.
)";

[[noreturn]] void UsageError(const std::string& problem) {
  std::fprintf(stderr, "error: %s (see --help)\n", problem.c_str());
  std::exit(2);
}

long ParsePositive(const std::string& name, const std::string& text) {
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1) {
    UsageError("--" + name + " must be an integer >= 1, got '" + text + "'");
  }
  return value;
}

struct Options {
  std::string model;
  long runs = 20;
  std::vector<long> train_batches = {1, 8, 32};
  long num_threads = 1;
  std::string checkpoint;
};

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int index = 1; index < argc; ++index) {
    std::string argument = argv[index];
    if (argument == "--help" || argument == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (argument == "--version") {
      std::printf("TFLite %s\n", TfLiteVersion());
      std::exit(0);
    }
    if (argument.rfind("--", 0) != 0) UsageError("unexpected argument '" + argument + "'");
    std::string name = argument.substr(2), value;
    size_t equals = name.find('=');
    if (equals != std::string::npos) {
      value = name.substr(equals + 1);
      name = name.substr(0, equals);
    } else {
      if (index + 1 >= argc) UsageError("--" + name + " needs a value");
      value = argv[++index];
    }
    if (name == "model") {
      options.model = value;
    } else if (name == "runs") {
      options.runs = ParsePositive(name, value);
    } else if (name == "num_threads") {
      options.num_threads = ParsePositive(name, value);
    } else if (name == "checkpoint") {
      options.checkpoint = value;
    } else if (name == "train_batches") {
      options.train_batches.clear();
      std::stringstream list(value);
      for (std::string item; std::getline(list, item, ',');) {
        options.train_batches.push_back(ParsePositive(name, item));
      }
      if (options.train_batches.empty()) UsageError("--train_batches needs at least one size");
    } else {
      UsageError("unknown flag --" + name);
    }
  }
  if (options.model.empty()) UsageError("--model is required");
  if (options.checkpoint.empty()) options.checkpoint = options.model + ".bench.ckpt";
  return options;
}

// Random values in the model's own dtype: the cost of a kernel does not depend on the values,
// and float images stay in [0, 255] like real pixels.
// Random inputs: a float input's values inside the range the model takes (0..255 when unknown).
Tensor RandomTensor(const tflite_transfer::InputSpec& input, tflite_transfer::Shape shape, std::mt19937& random) {
  const DType dtype = input.dtype;
  Tensor tensor = Tensor::Zeros(dtype, std::move(shape));
  int64_t count = tensor.num_elements();
  switch (dtype) {
    case DType::kFloat32: {
      const auto range = input.range.value_or(std::make_pair(0.0, 255.0));
      std::uniform_real_distribution<float> pixel(static_cast<float>(range.first), static_cast<float>(range.second));
      for (int64_t i = 0; i < count; ++i) tensor.data<float>()[i] = pixel(random);
      break;
    }
    default:
      for (auto& byte : tensor.bytes) byte = static_cast<uint8_t>(random() & 0xff);
  }
  return tensor;
}

Tensor RandomBottlenecks(int64_t batch, int64_t size, std::mt19937& random) {
  Tensor tensor = Tensor::Zeros(DType::kFloat32, {batch, size});
  std::normal_distribution<float> value(0.0f, 1.0f);
  for (int64_t i = 0; i < tensor.num_elements(); ++i) tensor.data<float>()[i] = value(random);
  return tensor;
}

Tensor RandomLabels(const TransferModel& model, int64_t batch, std::mt19937& random) {
  const bool one_hot = model.metadata().label.kind == tflite_transfer::contract::kLabelOneHot;
  if (model.label_dtype() == DType::kFloat32 && !one_hot) {
    return RandomBottlenecks(batch, model.num_classes(), random);  // regression targets
  }
  Tensor labels = one_hot ? Tensor::Zeros(DType::kFloat32, {batch, model.num_classes()}) : Tensor::Zeros(DType::kInt32, {batch});
  std::uniform_int_distribution<int32_t> label(0, static_cast<int32_t>(model.num_classes() - 1));
  for (int64_t i = 0; i < batch; ++i) {
    if (one_hot) {
      labels.data<float>()[i * model.num_classes() + label(random)] = 1.0f;
    } else {
      labels.data<int32_t>()[i] = label(random);
    }
  }
  return labels;
}

// One signature at one batch: every run's wall time, or why it was skipped.
struct Timing {
  std::string signature;
  long batch = 0;
  std::vector<double> run_us;
  std::string skipped;
};

double Microseconds(std::chrono::steady_clock::duration duration) {
  return std::chrono::duration<double, std::micro>(duration).count();
}

// One warm-up call (allocates the signature's tensors), then `runs` timed calls. A refusal by
// the runtime (InvalidInputError: e.g. the model's fixed batch differs) is reported, not fatal.
Timing TimeCalls(const std::string& signature, long batch, long runs, const std::function<void()>& call) {
  Timing timing{signature, batch, {}, ""};
  try {
    call();
    for (long run = 0; run < runs; ++run) {
      auto started = std::chrono::steady_clock::now();
      call();
      timing.run_us.push_back(Microseconds(std::chrono::steady_clock::now() - started));
    }
  } catch (const tflite_transfer::InvalidInputError& error) {
    timing.run_us.clear();
    timing.skipped = error.what();
  }
  return timing;
}

// A number for JSON: finite values only (JSON has no NaN).
std::string Number(double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.3f", value);
  return text;
}

std::string TimingJson(const Timing& timing) {
  std::string json = "{\"signature\":" + JsonQuote(timing.signature) +
                     ",\"batch\":" + std::to_string(timing.batch);
  if (!timing.skipped.empty()) return json + ",\"skipped\":" + JsonQuote(timing.skipped) + "}";
  std::vector<double> sorted = timing.run_us;
  std::sort(sorted.begin(), sorted.end());
  size_t count = sorted.size();
  double median = count % 2 ? sorted[count / 2] : (sorted[count / 2 - 1] + sorted[count / 2]) / 2;
  double total = 0;
  for (double value : sorted) total += value;
  json += ",\"runs\":" + std::to_string(count) + ",\"median_us\":" + Number(median) +
          ",\"min_us\":" + Number(sorted.front()) + ",\"max_us\":" + Number(sorted.back()) +
          ",\"mean_us\":" + Number(total / static_cast<double>(count)) + ",\"run_us\":[";
  for (size_t i = 0; i < timing.run_us.size(); ++i) {
    json += (i ? "," : "") + Number(timing.run_us[i]);
  }
  return json + "]}";
}

// "VmHWM:   12345 kB" and "Threads: 3" from /proc/self/status (Linux and Android); -1 if absent.
std::map<std::string, long> ProcessStatus() {
  std::map<std::string, long> values = {{"VmHWM", -1}, {"VmRSS", -1}, {"Threads", -1}};
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || !values.count(line.substr(0, colon))) continue;
    values[line.substr(0, colon)] = std::strtol(line.c_str() + colon + 1, nullptr, 10);
  }
  return values;
}

std::string ShapeJson(const tflite_transfer::Shape& shape) {
  std::string json = "[";
  for (size_t i = 0; i < shape.size(); ++i) json += (i ? "," : "") + std::to_string(shape[i]);
  return json + "]";
}

int Run(const Options& options) {
  std::mt19937 random(20261201);
  auto open_started = std::chrono::steady_clock::now();
  auto model = TransferModel::Open(options.model, static_cast<int>(options.num_threads));
  double open_us = Microseconds(std::chrono::steady_clock::now() - open_started);

  // One call of the image signatures: their fixed batch (a stateful base's stream takes only
  // whole calls), else one input.
  const long image_batch = static_cast<long>(model->metadata().image_batch.value_or(1));
  tflite_transfer::Shape image_shape = model->input_shape();
  image_shape.insert(image_shape.begin(), image_batch);
  Tensor image = RandomTensor(model->input_spec(), image_shape, random);
  Tensor one_label = RandomLabels(*model, image_batch, random);

  std::vector<Timing> timings;
  timings.push_back(TimeCalls(contract::kLoad, image_batch, options.runs, [&] { model->Load(image); }));
  timings.push_back(TimeCalls(contract::kInfer, image_batch, options.runs, [&] { model->Infer(image); }));
  for (long batch : options.train_batches) {
    Tensor bottlenecks = RandomBottlenecks(batch, model->bottleneck_size(), random);
    Tensor labels = RandomLabels(*model, batch, random);
    timings.push_back(TimeCalls(contract::kTrain, batch, options.runs, [&] { model->Train(bottlenecks, labels); }));
  }
  timings.push_back(TimeCalls(contract::kTrainImages, image_batch, options.runs, [&] { model->TrainImages(image, one_label); }));
  timings.push_back(TimeCalls(contract::kSave, 1, options.runs, [&] { model->SaveCheckpoint(options.checkpoint); }));
  timings.push_back(TimeCalls(contract::kRestore, 1, options.runs, [&] { model->RestoreCheckpoint(options.checkpoint); }));
  std::remove(options.checkpoint.c_str());

  std::map<std::string, long> status = ProcessStatus();
  struct utsname machine {};
  uname(&machine);
  std::string contract = "[";
  for (const auto& [signature, tensors] : tflite_transfer::SignatureContract()) {
    contract += (contract.size() > 1 ? "," : "") + JsonQuote(signature);
  }
  contract += "]";

  std::string json = "{\"program\":\"tflite_transfer_bench\",\"format_version\":" +
                     std::to_string(kFormatVersion) + ",\"tflite_version\":" + JsonQuote(TfLiteVersion());
  json += ",\"machine\":{\"sysname\":" + JsonQuote(machine.sysname) + ",\"release\":" +
          JsonQuote(machine.release) + ",\"arch\":" + JsonQuote(machine.machine) + "}";
  json += ",\"model\":{\"path\":" + JsonQuote(options.model) + ",\"fingerprint\":" +
          JsonQuote(model->metadata().fingerprint) + ",\"image_dtype\":" +
          JsonQuote(tflite_transfer::NumpyName(model->image_dtype())) + ",\"image_shape\":" +
          ShapeJson(model->image_shape()) + ",\"bottleneck_size\":" +
          std::to_string(model->bottleneck_size()) + ",\"num_classes\":" +
          std::to_string(model->num_classes()) + ",\"state_tensors\":" +
          std::to_string(model->metadata().state.size()) + "}";
  json += ",\"contract_checked\":" + contract;
  json += ",\"num_threads\":" + std::to_string(options.num_threads) + ",\"open_us\":" + Number(open_us);
  json += ",\"timings\":[";
  for (size_t i = 0; i < timings.size(); ++i) json += (i ? "," : "") + TimingJson(timings[i]);
  json += "],\"process\":{\"peak_rss_kib\":" + std::to_string(status["VmHWM"]) + ",\"rss_kib\":" +
          std::to_string(status["VmRSS"]) + ",\"threads\":" + std::to_string(status["Threads"]) + "}}";
  std::printf("%s\n", json.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  try {
    return Run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
