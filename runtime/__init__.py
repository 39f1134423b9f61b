"""tflite-transfer runtime: train, checkpoint and export compiled models without TensorFlow."""
