"""Image datasets for the vision networks, read offline from local files (torchvision not needed).

* ``digits``: scikit-learn's bundled handwritten digits (``load_digits``: 1,797 real 8x8 grey images, no
  download), split once with a fixed seed into train / valid / test (70 / 15 / 15 %, stratified). The test
  split is only for the final report, never for selection.
* ``cifar``: CIFAR-10 or CIFAR-100 in the standard python-pickle layout (``data_batch_1..5`` + ``test_batch``,
  or ``train`` + ``test``) from a local directory; the last 10 % of the training set (a fixed seeded
  permutation) is the validation split.
* ``folder``: an image-folder dataset (``root/{train,valid,test}/<class>/<image>``, the
  ``torchvision.datasets.ImageFolder`` layout; ``val`` is accepted for ``valid``), read with Pillow, resized to
  the space's image size; classes are the sorted sub-directory names of ``train``.

Every split is a :class:`ImageSplit` of float tensors ``(N, C, H, W)``, normalised with the training split's
per-channel mean and standard deviation. (A folder dataset is loaded into memory: fine for CIFAR-sized data;
ImageNet needs a streaming loader, which this module does not provide.)
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageSplit", "ImageData", "DATASETS", "load_dataset", "load_digits", "load_cifar", "load_folder",
           "IMAGE_SUFFIXES"]

SPLIT_SEED = 20220516
"""Seed of every fixed split (the digits' train/valid/test split, CIFAR's validation hold-out)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


@dataclass
class ImageSplit:
    """Images ``(N, C, H, W)`` float32 and labels ``(N,)`` int64."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class ImageData:
    """The three splits of a dataset, its number of classes and its image geometry."""

    name: str
    train: ImageSplit
    valid: ImageSplit
    test: ImageSplit
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[2]


def _normalised(splits: Tuple[ImageSplit, ...]) -> Tuple[ImageSplit, ...]:
    """Standardise every split with the first (training) split's per-channel mean and std."""
    mean = splits[0].images.mean(dim=(0, 2, 3), keepdim=True)
    std = splits[0].images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return tuple(ImageSplit((s.images - mean) / std, s.labels) for s in splits)


def _make(images: np.ndarray, labels: np.ndarray) -> ImageSplit:
    return ImageSplit(torch.as_tensor(images, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64))


def load_digits(valid_fraction: float = 0.15, test_fraction: float = 0.15) -> ImageData:
    """scikit-learn's digits, split (stratified, seed :data:`SPLIT_SEED`) into train / valid / test."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = digits.images[:, None].astype(np.float32) / 16.0
    rest_x, test_x, rest_y, test_y = train_test_split(images, digits.target, test_size=test_fraction,
                                                      random_state=SPLIT_SEED, stratify=digits.target)
    train_x, valid_x, train_y, valid_y = train_test_split(
        rest_x, rest_y, test_size=valid_fraction / (1.0 - test_fraction), random_state=SPLIT_SEED, stratify=rest_y)
    splits = _normalised((_make(train_x, train_y), _make(valid_x, valid_y),
                          _make(test_x, test_y)))
    return ImageData("digits", *splits, num_classes=10)


_CIFAR_LAYOUTS = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": (["train"], ["test"], b"fine_labels", 100),
}


def _read_pickles(root: Path, names: List[str], key: bytes) -> Tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        path = root / name
        try:
            with path.open("rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            images.append(data)
            labels.append(np.asarray(batch[key], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a CIFAR python pickle with {key.decode()!r} ({type(err).__name__}: "
                             f"{err})") from None
    return np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels)


def load_cifar(root: str | Path, valid_fraction: float = 0.1) -> ImageData:
    """CIFAR-10 or CIFAR-100 (python pickles) from ``root`` (the ``cifar-10-batches-py`` or ``cifar-100-python``
    directory).

    Raises:
        ValueError: ``root`` holds neither layout (naming the files each needs) or a file is not a CIFAR pickle.
    """
    root = Path(root)
    for name, (train_files, test_files, key, classes) in _CIFAR_LAYOUTS.items():
        if all((root / f).is_file() for f in train_files + test_files):
            train_x, train_y = _read_pickles(root, train_files, key)
            test_x, test_y = _read_pickles(root, test_files, key)
            order = np.random.default_rng(SPLIT_SEED).permutation(len(train_y))
            n_valid = int(round(valid_fraction * len(train_y)))
            valid, train = order[len(order) - n_valid:], order[: len(order) - n_valid]
            splits = _normalised((_make(train_x[train], train_y[train]),
                                  _make(train_x[valid], train_y[valid]), _make(test_x, test_y)))
            return ImageData(name, *splits, num_classes=classes)
    raise ValueError(f"cifar directory {str(root)!r} is not in the CIFAR python format: expected data_batch_1..5 "
                     f"and test_batch (CIFAR-10) or train and test (CIFAR-100)")


def _split_dir(root: Path, names: Tuple[str, ...]) -> Optional[Path]:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _read_folder(directory: Path, classes: List[str], image_size: int, channels: int) -> ImageSplit:
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}[channels]
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((directory / name).glob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as image:
                    image = image.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"{path}: not a readable image ({err})") from None
            images.append(array.reshape(image_size, image_size, channels).transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise ValueError(f"image folder {str(directory)!r} has no images under {classes}")
    return _make(np.stack(images), np.asarray(labels))


def load_folder(root: str | Path, image_size: int, channels: int = 3) -> ImageData:
    """An image-folder dataset: ``root/train/<class>/*``, ``root/valid`` (or ``val``) and ``root/test``.

    Raises:
        ValueError: a split directory is missing, a split has a class ``train`` lacks, or an image is unreadable.
    """
    root = Path(root)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    dirs = {"train": _split_dir(root, ("train",)), "valid": _split_dir(root, ("valid", "val")),
            "test": _split_dir(root, ("test",))}
    missing = [k for k, v in dirs.items() if v is None]
    if missing:
        raise ValueError(f"image folder {str(root)!r} is not in the ImageFolder layout: missing split directories "
                         f"{missing} (expected train/, valid/ or val/, test/, each with one directory per class)")
    classes = sorted(p.name for p in dirs["train"].iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"image folder {str(dirs['train'])!r} has no class directories")
    for split in ("valid", "test"):
        extra = sorted({p.name for p in dirs[split].iterdir() if p.is_dir()} - set(classes))
        if extra:
            raise ValueError(f"image folder {str(dirs[split])!r} has classes {extra} that train/ lacks")
    splits = _normalised(tuple(_read_folder(dirs[k], classes, image_size, channels)
                               for k in ("train", "valid", "test")))
    return ImageData(root.name, *splits, num_classes=len(classes))


DATASETS = ("digits", "cifar", "folder")


def load_dataset(name: str, root: Optional[str] = None, image_size: Optional[int] = None,
                 channels: int = 3) -> ImageData:
    """One of :data:`DATASETS` (``root`` for cifar and folder; ``image_size`` and ``channels`` for folder).

    Raises:
        ValueError: an unknown dataset, a missing ``root`` or a directory in the wrong format.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} not in allowed values {DATASETS}")
    if name == "digits":
        return load_digits()
    if root is None:
        raise ValueError(f"dataset {name!r} needs --data-dir")
    if name == "cifar":
        return load_cifar(root)
    if image_size is None:
        raise ValueError("dataset 'folder' needs an image size (the space's)")
    return load_folder(root, image_size, channels)
