"""The accuracy benchmark's settings and hyper-parameters (chosen on a validation split of the
training images, never on the test set)."""

from __future__ import annotations

import dataclasses

LEARNING_RATES = {"sgd": 0.003, "adam": 0.003}
FINE_TUNE_LEARNING_RATE = 0.0003
CALIBRATION_IMAGES = 32
BASES = ("int8", "int8_synthetic_calibration", "float")
METHODS = ("ours_sgd", "ours_adam", "imprint", "imprint_adam", "tf_sgd", "tf_adam", "ncm")


@dataclasses.dataclass(frozen=True)
class Settings:
    image_size: int = 160
    draws: int = 5
    shots: tuple[int, ...] = (1, 5, 10, 20)
    test_per_class: int = 100
    steps: int = 1000
    seed: int = 0
    threads: int = 2
    bases: tuple[str, ...] = BASES      # "int8" and "float" are needed for the comparisons

    @classmethod
    def quick(cls) -> "Settings":
        return cls(image_size=96, draws=1, shots=(1, 5), test_per_class=20, steps=200,
                   bases=("int8", "float"))
