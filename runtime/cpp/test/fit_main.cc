// tflite_transfer_fit: drives the library's Fit (src/training.h) for tests, the way an app
// would: MODEL BOTTLENECKS.npy LABELS.npy [--learning_rate LR] [--epochs N] [--batch_size N]
// [--imprint when_fresh|always|never|only] [--checkpoint OUT]. Prints one JSON line with the
// FitResult ({"status", "message", "losses", "stable_learning_rate", "imprinted"}) and writes
// the model's state after Fit (rolled back or not) to OUT; "only" imprints without training.
// Labels: class ids (any integer dtype) or float rows, converted as the model takes them.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "errors.h"
#include "imprint.h"
#include "json.h"
#include "npy.h"
#include "training.h"
#include "transfer_model.h"

namespace tflite_transfer {
namespace {

std::string Number(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  char text[40];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

Tensor Labels(const TransferModel& model, const Tensor& labels) {
  if (model.metadata().label.dtype == DType::kFloat32) return ConvertToFloat(labels, DType::kFloat32);
  Tensor ids = Tensor::Zeros(DType::kInt32, labels.shape);
  for (int64_t i = 0; i < labels.num_elements(); ++i) ids.data<int32_t>()[i] = static_cast<int32_t>(ElementAsDouble(labels, i));
  return ids;
}

int Run(int argc, char** argv) {
  if (argc < 4 || (argc - 4) % 2) {
    std::fprintf(stderr, "usage: tflite_transfer_fit MODEL BOTTLENECKS.npy LABELS.npy [--flag value]...\n");
    return 2;
  }
  std::map<std::string, std::string> flags;
  for (int index = 4; index + 1 < argc; index += 2) flags[std::string(argv[index]).substr(2)] = argv[index + 1];
  auto model = TransferModel::Open(argv[1]);
  const Tensor bottlenecks = ConvertToFloat(ReadNpy(argv[2]), DType::kFloat32);
  const Tensor labels = Labels(*model, ReadNpy(argv[3]));
  if (flags.count("learning_rate")) model->SetLearningRate(std::strtof(flags["learning_rate"].c_str(), nullptr));
  TrainingPlan plan;
  if (flags.count("epochs")) plan.epochs = std::strtoll(flags["epochs"].c_str(), nullptr, 10);
  if (flags.count("batch_size")) plan.batch_size = std::strtoll(flags["batch_size"].c_str(), nullptr, 10);
  const std::string imprint = flags.count("imprint") ? flags["imprint"] : "when_fresh";
  plan.imprint = imprint == "always" ? ImprintChoice::kAlways : imprint == "never" ? ImprintChoice::kNever
                                                                                   : ImprintChoice::kWhenFresh;
  FitResult result;
  if (imprint == "only") {
    Imprint(*model, bottlenecks, labels);
    result.imprinted = true;
  } else {
    result = Fit(*model, bottlenecks, labels, plan);
  }
  if (flags.count("checkpoint")) model->SaveCheckpoint(flags["checkpoint"]);
  std::string losses = "[";
  for (double loss : result.losses) losses += (losses.size() > 1 ? "," : "") + Number(loss);
  std::printf("{\"status\":\"%s\",\"message\":%s,\"losses\":%s],\"stable_learning_rate\":%s,\"imprinted\":%s}\n",
              result.ok() ? "ok" : "training_diverged", JsonQuoteAscii(result.message).c_str(), losses.c_str(),
              result.stable_learning_rate ? Number(*result.stable_learning_rate).c_str() : "null",
              result.imprinted ? "true" : "false");
  return 0;
}

}  // namespace
}  // namespace tflite_transfer

int main(int argc, char** argv) {
  try {
    return tflite_transfer::Run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
