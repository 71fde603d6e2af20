"""Tests of the image readers (fairseq_shiftadd.vision.data) on tiny files written in the real formats."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fairseq_shiftadd.vision.data import load_cifar, load_dataset, load_digits, load_folder


def _write_cifar_batch(path, n, label_key, seed, classes):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"x", label_key: rng.integers(0, classes, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f.png"] * n}
    with open(path, "wb") as f:
        pickle.dump(batch, f)
    return batch


def test_cifar10_reader(tmp_path):
    batches = [_write_cifar_batch(tmp_path / f"data_batch_{i}", 4, b"labels", i, 10) for i in range(1, 6)]
    test = _write_cifar_batch(tmp_path / "test_batch", 3, b"labels", 9, 10)
    data = load_cifar(tmp_path, valid_fraction=0.1)
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == ("cifar10", 10, 3, 32)
    assert (len(data.train), len(data.valid), len(data.test)) == (18, 2, 3)
    assert data.test.labels.tolist() == test[b"labels"]
    # channel-first layout (the first 1024 bytes are the red plane), standardised with the train statistics
    first = test[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255
    first_standardised = data.test.images[0].numpy()
    corr = np.corrcoef(first.reshape(-1), first_standardised.reshape(-1))[0, 1]
    assert corr > 0.99
    assert sorted(data.train.labels.tolist() + data.valid.labels.tolist()) == sorted(
        sum((b[b"labels"] for b in batches), []))
    assert abs(float(data.train.images.mean())) < 1e-4


def test_cifar100_reader(tmp_path):
    _write_cifar_batch(tmp_path / "train", 10, b"fine_labels", 1, 100)
    _write_cifar_batch(tmp_path / "test", 2, b"fine_labels", 2, 100)
    data = load_dataset("cifar", str(tmp_path))
    assert (data.name, data.num_classes, len(data.train), len(data.valid)) == ("cifar100", 100, 9, 1)


def test_cifar_wrong_format_errors(tmp_path):
    with pytest.raises(ValueError, match=r"is not in the CIFAR python format: expected data_batch_1\.\.5"):
        load_cifar(tmp_path)
    for name in ("train", "test"):
        (tmp_path / name).write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR python pickle"):
        load_cifar(tmp_path)


def _write_folder(root, splits=("train", "val", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{i}.png")


def test_image_folder_reader(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    data = load_folder(tmp_path, image_size=8)
    assert data.num_classes == 2 and data.image_size == 8 and data.in_channels == 3
    assert data.train.labels.tolist() == [0, 0, 1, 1] and len(data.valid) == 4
    grey = load_folder(tmp_path, image_size=4, channels=1)
    assert grey.train.images.shape == (4, 1, 4, 4)
    assert torch.isfinite(grey.test.images).all()


def test_image_folder_wrong_layout_errors(tmp_path):
    _write_folder(tmp_path, splits=("train",))
    with pytest.raises(ValueError,
                       match=r"not in the ImageFolder layout: missing split directories \['valid', 'test'\]"):
        load_folder(tmp_path, 8)
    (tmp_path / "valid" / "bird").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match=r"has classes \['bird'\] that train/ lacks"):
        load_folder(tmp_path, 8)
    (tmp_path / "valid" / "bird").rmdir()
    (tmp_path / "valid" / "cat").mkdir()
    (tmp_path / "valid" / "cat" / "0.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="0.png: not a readable image"):
        load_folder(tmp_path, 8)


def test_digits_split_is_fixed_disjoint_and_stratified():
    a, b = load_digits(), load_digits()
    assert (len(a.train), len(a.valid), len(a.test)) == (1257, 270, 270)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    rows = {tuple(x.flatten().tolist()) for x in a.test.images}
    assert not rows & {tuple(x.flatten().tolist()) for x in a.valid.images[:50]}
    assert torch.bincount(a.test.labels).min() >= 26  # about 27 per class


def test_dataset_errors():
    with pytest.raises(ValueError, match="dataset 'mnist' not in allowed values"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="dataset 'cifar' needs --data-dir"):
        load_dataset("cifar")
