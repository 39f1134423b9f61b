// TransferModel: one compiled tflite-transfer model in the stock TFLite interpreter, through
// the C API's signature runners (what an NDK or embedded app links against), with the same
// lifecycle and checks as the Python runtime (runtime/model.py):
//
//   auto model = tflite_transfer::TransferModel::Open("transfer_model.tflite");
//   Tensor bottlenecks = model->Load(inputs);                 // `load` (images or any input)
//   float loss = model->Train(bottlenecks, labels);           // `train`: one optimizer step
//   Tensor probabilities = model->Infer(inputs);              // `infer`
//   FitResult fit = Fit(*model, bottlenecks, labels);         // epochs of `train` (training.h)
//   model->SaveCheckpoint("me.ckpt");                         // `save` -> file, atomically
#ifndef TFLITE_TRANSFER_TRANSFER_MODEL_H_
#define TFLITE_TRANSFER_TRANSFER_MODEL_H_

#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint.h"
#include "model_file.h"
#include "model_metadata.h"
#include "model_signatures.h"
#include "tensor.h"

struct TfLiteModel;
struct TfLiteInterpreter;
struct TfLiteSignatureRunner;

namespace tflite_transfer {

struct OpenOptions {
  int num_threads = 1;
  bool verify_digest = true;  // false: skip the model digest check (file verified elsewhere)
};

class TransferModel {
 public:
  // Reads the file (regular files only), checks its model digest before the TFLite library
  // sees a byte, reads its metadata and checks the signature contract; throws
  // InvalidInputError (missing/damaged file) or UnsupportedModelError (not our model, missing
  // signature, or an op/op version this TFLite library lacks: the library's message is quoted).
  static std::unique_ptr<TransferModel> Open(const std::string& path, const OpenOptions& options = {});
  static std::unique_ptr<TransferModel> Open(const std::string& path, int num_threads) {
    OpenOptions options;
    options.num_threads = num_threads;
    return Open(path, options);
  }
  ~TransferModel();
  TransferModel(const TransferModel&) = delete;
  TransferModel& operator=(const TransferModel&) = delete;

  const ModelMetadata& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  const TensorNames& names() const { return metadata_.names; }
  // The input `load`/`infer`/`train_images` take (inputs.input_spec): version 3's `input`, checked
  // against the signature at open, or for versions 1 and 2 an image in the signature's shape and
  // dtype with the metadata's image_range.
  const InputSpec& input_spec() const { return input_spec_; }
  const Shape& input_shape() const { return input_spec_.shape; }  // without the batch dimension
  DType input_dtype() const { return input_spec_.dtype; }
  const Shape& image_shape() const { return input_shape(); }      // their names before inputs of any kind
  DType image_dtype() const { return input_dtype(); }
  int64_t num_classes() const { return metadata_.num_outputs; }
  int64_t bottleneck_size() const { return metadata_.bottleneck_size; }
  DType label_dtype() const { return metadata_.label.dtype; }
  bool digest_checked() const { return digest_checked_; }

  // The signatures. Batch-first inputs; every input is validated before the interpreter sees it.
  // With a fixed image batch B (metadata image_batch), Load and Infer take any number of inputs
  // and run them in chunks of B, the last chunk padded with copies of its last real input whose
  // outputs are dropped (per-sample signatures, so nothing is biased). Train and TrainImages
  // with a fixed batch take exactly that many samples (one optimizer step is one batch).
  // A stateful base (runtime/SPEC.md#stateful-bases) is one stream per model: every Load, Infer and
  // TrainImages call advances it once per chunk, never padded (a count that is not a multiple of
  // B is refused before anything runs); GetState/SetState/checkpoints carry it, Initialize
  // rewinds it.
  Tensor Load(const Tensor& inputs);                               // -> float32 [b, D]
  Tensor Infer(const Tensor& inputs);                              // -> [b, num_classes]
  // Both refuse a step that would pass contract::kMaxStep (InvalidInputError, nothing changes).
  float Train(const Tensor& bottlenecks, const Tensor& labels);    // one step, returns the loss
  float TrainImages(const Tensor& inputs, const Tensor& labels);   // base + head + step
  // The optimizer's step counter (the state's `step`; 0 for a model without one).
  int64_t StepCounter();
  void SetLearningRate(float learning_rate);
  int32_t Initialize();                                            // -> step (0)
  TensorMap GetState();                                            // `save`
  // `restore`, after checking every name, shape, dtype and finiteness (not of base_state
  // entries): a bad state changes nothing.
  int32_t SetState(const TensorMap& state);
  // Whether the head's kernels and biases still equal, bit for bit, what `save` returned right
  // after the model was opened (the compiled initial weights: after Open or Initialize).
  bool HeadHoldsCompiledWeights();

  // Checkpoint files in the Python runtime's format (runtime/SPEC.md#checkpoint-file-format).
  void SaveCheckpoint(const std::string& path, const std::map<std::string, std::string>& extra_metadata = {});
  // Reads and validates the file against this model first (ReadCheckpointFor: a file that
  // cannot hold this model's state is refused from its header, its data never read), then the
  // values' meaning (CheckState); on any problem throws CheckpointError and changes nothing.
  void RestoreCheckpoint(const std::string& path, const CheckpointReadOptions& options = {});

 private:
  TransferModel() = default;
  TfLiteSignatureRunner* Runner(const std::string& signature) const;
  TensorMap Run(const std::string& signature,
                const std::vector<std::pair<std::string, const Tensor*>>& inputs);
  float RunTrain(const std::string& signature, const std::string& input_name,
                 const Tensor& input, const Tensor& labels);
  Tensor RunInputsInChunks(const std::string& signature, const std::string& output, const Tensor& inputs);

  std::string source_;
  std::vector<uint8_t> model_bytes_;  // must outlive the TfLiteModel built on it
  ModelMetadata metadata_;
  InputSpec input_spec_;
  TensorMap compiled_head_;  // the head's kernels and biases as `save` returned them at open
  bool digest_checked_ = false;
  std::string errors_;  // what the TFLite error reporter said since the last call
  TfLiteModel* model_ = nullptr;
  TfLiteInterpreter* interpreter_ = nullptr;
  std::map<std::string, TfLiteSignatureRunner*> runners_;
  std::set<std::string> allocated_;  // signatures whose tensors are allocated
  std::optional<int64_t> step_;      // the step counter, read from `save` once, then counted
};

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_TRANSFER_MODEL_H_
