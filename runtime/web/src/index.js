/** tflite-transfer in the browser: train a compiled .tflite model with LiteRT.js. */
export {TransferModel} from './transfer_model.js';
export {TransferError, InvalidInputError, UnsupportedModelError, VerificationError, CheckpointError,
        TrainingDivergedError} from './errors.js';
export {readCheckpoint, writeCheckpoint, checkCompatible} from './checkpoint.js';
export {readModelMetadata, digestMatches} from './contract.js';
export {pixelsFromImage} from './images.js';
export {loadLiteRtForPage} from './litert.js';
export {stableLearningRate} from './training_watch.js';
