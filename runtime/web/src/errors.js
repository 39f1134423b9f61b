/**
 * The error family of tflite-transfer, the same classes as the Python runtime
 * (tflite_transfer.runtime.errors). Messages are one line naming the file, tensor, shape,
 * dtype or value involved and what to do.
 */

export class TransferError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** A user-supplied file, tensor or value is unusable (wrong type, shape, range...). */
export class InvalidInputError extends TransferError {}

/** Valid TFLite, but not a model this runtime can run (contract, version, dynamic shapes). */
export class UnsupportedModelError extends TransferError {}

/** A built-in check failed: the model's digest does not match its bytes, or training diverged. */
export class VerificationError extends TransferError {}

/** A checkpoint is truncated, corrupt, of another format version, or of another model. */
export class CheckpointError extends TransferError {}

/**
 * `fit` stopped and rolled the weights back: the loss became NaN/Inf, or an epoch's mean loss
 * rose past the divergence threshold (training_watch.js). `losses`: the epoch means so far;
 * `stableLearningRate`: the largest stable rate for the cached samples, or null (adaptive
 * optimizers, or no bound known).
 */
export class TrainingDivergedError extends VerificationError {
  constructor(message, losses = [], stableLearningRate = null) {
    super(message);
    this.losses = losses;
    this.stableLearningRate = stableLearningRate;
  }
}
