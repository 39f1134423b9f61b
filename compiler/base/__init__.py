"""Base sources: a .tflite, Keras file, SavedModel or the embedded MobileNetV2 -> TFLite bytes."""
