// One exception family, as in the Python runtime (runtime/errors.py): every message names the
// file, tensor, shape or dtype involved and says what to do.
#ifndef TFLITE_TRANSFER_ERRORS_H_
#define TFLITE_TRANSFER_ERRORS_H_

#include <stdexcept>

namespace tflite_transfer {

class TransferError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value passed by the caller (image, label, bottleneck, state) does not fit the model.
class InvalidInputError : public TransferError {
 public:
  using TransferError::TransferError;
};

// The file is not a tflite-transfer model, or this TFLite library cannot run it.
class UnsupportedModelError : public TransferError {
 public:
  using TransferError::TransferError;
};

// A built-in check failed: the model file does not match its model_digest (damaged in transfer
// or storage), or a contract version 2 file lacks its single digest field.
class VerificationError : public TransferError {
 public:
  using TransferError::TransferError;
};

// A checkpoint file is missing, corrupt, or belongs to another model.
class CheckpointError : public TransferError {
 public:
  using TransferError::TransferError;
};

}  // namespace tflite_transfer

#endif  // TFLITE_TRANSFER_ERRORS_H_
