#include "model_signatures.h"

#include <set>

#include "errors.h"
#include "text.h"
// TFLite 2.14 declares the signature-runner C API in c_api_experimental.h; newer LiteRT
// releases moved it to c_api.h and keep this header, so including both works everywhere.
#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/c_api_experimental.h"

namespace tflite_transfer {

std::vector<SignatureSpec> SignatureSpecs(const ModelMetadata& metadata) {
  using namespace contract;  // NOLINT: the signature names and the fixed tensor names
  std::vector<std::string> state;
  for (const StateSpec& spec : metadata.state) state.push_back(spec.name);
  const TensorNames& names = metadata.names;
  return {
      {kInfer, {names.input}, {metadata.output}},
      {kLoad, {names.input}, {names.bottleneck}},
      {kTrain, {names.bottleneck, names.label}, {names.loss}},
      {kTrainImages, {names.input, names.label}, {names.loss}},
      {kSave, {}, state},
      {kRestore, state, {kStepTensor}},
      {kInitialize, {}, {kStepTensor}},
      {kSetLearningRate, {kLearningRateTensor}, {kLearningRateTensor}},
  };
}

const std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>&
SignatureContract() {
  static const auto* contract = [] {
    ModelMetadata any;  // no state, no output name: only what every model has
    auto* list = new std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>;
    for (SignatureSpec& spec : SignatureSpecs(any)) {
      std::vector<std::string> outputs;
      for (std::string& name : spec.outputs) {
        if (!name.empty()) outputs.push_back(std::move(name));
      }
      list->emplace_back(spec.name, std::make_pair(std::move(spec.inputs), std::move(outputs)));
    }
    return list;
  }();
  return *contract;
}

std::map<std::string, TfLiteSignatureRunner*> CheckedRunners(TfLiteInterpreter* interpreter,
                                                             const std::vector<SignatureSpec>& specs,
                                                             const std::string& shown) {
  std::set<std::string> keys;
  for (int32_t index = 0; index < TfLiteInterpreterGetSignatureCount(interpreter); ++index) {
    keys.insert(TfLiteInterpreterGetSignatureKey(interpreter, index));
  }
  std::string missing;
  for (const SignatureSpec& spec : specs) {
    if (!keys.count(spec.name)) missing += (missing.empty() ? "" : ", ") + spec.name;
  }
  if (!missing.empty()) {
    throw UnsupportedModelError(shown + ": not a tflite-transfer model: missing signature(s) " + missing);
  }
  std::map<std::string, TfLiteSignatureRunner*> runners;
  try {
    for (const SignatureSpec& spec : specs) {
      TfLiteSignatureRunner* runner = TfLiteInterpreterGetSignatureRunner(interpreter, spec.name.c_str());
      runners[spec.name] = runner;
      std::set<std::string> have_inputs, have_outputs;
      for (size_t i = 0; i < TfLiteSignatureRunnerGetInputCount(runner); ++i) {
        have_inputs.insert(TfLiteSignatureRunnerGetInputName(runner, static_cast<int32_t>(i)));
      }
      for (size_t i = 0; i < TfLiteSignatureRunnerGetOutputCount(runner); ++i) {
        have_outputs.insert(TfLiteSignatureRunnerGetOutputName(runner, static_cast<int32_t>(i)));
      }
      std::set<std::string> need_inputs(spec.inputs.begin(), spec.inputs.end());
      std::set<std::string> need_outputs(spec.outputs.begin(), spec.outputs.end());
      if (have_inputs != need_inputs || have_outputs != need_outputs) {
        auto describe = [&](const std::set<std::string>& names) {
          std::string text = "[";
          for (const std::string& name : names) text += (text.size() > 1 ? ", " : "") + Quoted(name);
          return text + "]";
        };
        throw UnsupportedModelError(shown + ": not a tflite-transfer model: signature '" + spec.name + "' has inputs " +
                                    describe(have_inputs) + " and outputs " + describe(have_outputs) +
                                    ", the contract says " + describe(need_inputs) + " and " + describe(need_outputs));
      }
    }
  } catch (...) {
    for (auto& [name, runner] : runners) TfLiteSignatureRunnerDelete(runner);
    throw;
  }
  return runners;
}

}  // namespace tflite_transfer
