"""Fashion-MNIST as Debian's `dataset-fashion-mnist` ships it: a real labelled image set, offline.

    apt-get update && apt-get install -y dataset-fashion-mnist

10 classes, 60,000 training and 10,000 test images, 28x28 grey (MIT, Zalando SE), as gzipped
IDX files under /usr/share/datasets/fashion-mnist/ ($FASHION_MNIST_DIR overrides). A base
takes them resized to its input size and replicated to 3 channels, pixels 0-255.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "apt-get update && apt-get install -y dataset-fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray    # uint8 [n, 28, 28]
    labels: np.ndarray    # int32 [n], class ids 0-9


def data_dir() -> str:
    return os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR)


def is_available() -> bool:
    return all(os.path.isfile(os.path.join(data_dir(), name))
               for files in _FILES.values() for name in files)


def load_split(split: str) -> Split:
    """The 'train' or 'test' split; a clear error naming the install line when absent."""
    image_file, label_file = (os.path.join(data_dir(), name) for name in _FILES[split])
    for path in (image_file, label_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Fashion-MNIST file {path} not found; install it with "
                                    f"`{INSTALL_HINT}` (or set $FASHION_MNIST_DIR)")
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{image_file}: unexpected IDX shapes {images.shape} / {labels.shape}")
    return Split(images, labels.astype(np.int32))


def read_idx(path: str) -> np.ndarray:
    """An IDX file (big-endian header: 0, 0, type 0x08 = uint8, rank; then one uint32 per dim)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not a uint8 IDX file (magic {data[:4].hex()})")
    rank = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(shape)


def per_class_indices(labels: np.ndarray, count: int, rng: np.random.Generator,
                      classes: tuple[int, ...] | None = None) -> np.ndarray:
    """`count` random indices of each class, class by class: [len(classes), count]."""
    classes = tuple(range(len(CLASS_NAMES))) if classes is None else classes
    return np.stack([rng.choice(np.flatnonzero(labels == c), count, replace=False)
                     for c in classes])


def to_base_images(grey: np.ndarray, image_size: int, batch: int = 256) -> np.ndarray:
    """uint8 [n, 28, 28] -> float32 [n, size, size, 3], bilinear, pixels in [0, 255]."""
    import tensorflow as tf  # noqa: PLC0415 - only the conversion needs it

    out = np.empty((len(grey), image_size, image_size, 3), np.float32)
    for start in range(0, len(grey), batch):
        chunk = grey[start:start + batch, :, :, None].astype(np.float32)
        resized = tf.image.resize(chunk, (image_size, image_size), method="bilinear").numpy()
        out[start:start + batch] = np.clip(resized, 0, 255)
    return out
