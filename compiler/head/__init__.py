"""The trainable head: registries of heads, losses and optimizers, and its converted training graph."""
