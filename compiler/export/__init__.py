"""Export: a trained checkpoint baked into an inference-only model."""
