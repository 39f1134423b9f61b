"""tflite-transfer compiler: base + trainable head -> one builtin-only trainable .tflite."""
