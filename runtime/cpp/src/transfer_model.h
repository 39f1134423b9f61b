// TransferModel: one compiled tflite-transfer model in the stock TFLite interpreter, through
// the C API's signature runners (what an NDK or embedded app links against), with the same
// lifecycle and checks as the Python runtime (runtime/model.py):
//
//   auto model = tflite_transfer::TransferModel::Open("transfer_model.tflite");
//   Tensor bottlenecks = model->Load(images);                 // `load`
//   float loss = model->Train(bottlenecks, labels);           // `train`: one optimizer step
//   Tensor probabilities = model->Infer(images);              // `infer`
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
#include "tensor.h"

struct TfLiteModel;
struct TfLiteInterpreter;
struct TfLiteSignatureRunner;

namespace tflite_transfer {

// The exact input and output names of one signature (contract.signature_specs).
struct SignatureSpec {
  std::string name;
  std::vector<std::string> inputs, outputs;
};

// Every signature of a compiled model with this metadata, in the contract's order.
std::vector<SignatureSpec> SignatureSpecs(const ModelMetadata& metadata);

// The metadata-independent part, for callers that list the signatures (kept for code written
// against the first version of this API): signature -> (inputs, outputs) without the state
// names and infer's output name. Prefer SignatureSpecs(model.metadata()).
const std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>>&
SignatureContract();

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
  const Shape& image_shape() const { return image_shape_; }  // without the batch dimension
  DType image_dtype() const { return image_dtype_; }
  int64_t num_classes() const { return metadata_.num_outputs; }
  int64_t bottleneck_size() const { return metadata_.bottleneck_size; }
  DType label_dtype() const { return metadata_.label.dtype; }
  bool digest_checked() const { return digest_checked_; }

  // The signatures. Batch-first inputs; every input is validated before the interpreter sees it.
  // With a fixed image batch B (metadata image_batch), Load and Infer take any number of images
  // and run them in chunks of B, the last chunk padded with copies of its last real image whose
  // outputs are dropped (per-sample signatures, so nothing is biased). Train and TrainImages
  // with a fixed batch take exactly that many samples (one optimizer step is one batch).
  Tensor Load(const Tensor& images);                               // -> float32 [b, D]
  Tensor Infer(const Tensor& images);                              // -> [b, num_classes]
  // Both refuse a step that would pass contract::kMaxStep (InvalidInputError, nothing changes).
  float Train(const Tensor& bottlenecks, const Tensor& labels);    // one step, returns the loss
  float TrainImages(const Tensor& images, const Tensor& labels);   // base + head + step
  // The optimizer's step counter (the state's `step`; 0 for a model without one).
  int64_t StepCounter();
  void SetLearningRate(float learning_rate);
  int32_t Initialize();                                            // -> step (0)
  TensorMap GetState();                                            // `save`
  // `restore`, after checking every name, shape, dtype and finiteness: a bad state changes nothing.
  int32_t SetState(const TensorMap& state);

  // Checkpoint files in the Python runtime's format (BUILD.md, "Checkpoint file format").
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
  Tensor RunImagesInChunks(const std::string& signature, const std::string& output, const Tensor& images);

  std::string source_;
  std::vector<uint8_t> model_bytes_;  // must outlive the TfLiteModel built on it
  ModelMetadata metadata_;
  Shape image_shape_;
  DType image_dtype_ = DType::kFloat32;
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
