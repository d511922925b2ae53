"""CIFAR-10 loaders on small generated data sets (every format), the shared copy, bad data."""
from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sa_torch.train import data as D
from sa_torch.train.data import DataError, augment, load_cifar10, subset_indices

CLASSES = ("cat", "dog", "frog")
COUNTS = {"train": 4, "test": 2}


def write_imagefolder(root: Path, ext: str = ".png", seed: int = 0, counts=COUNTS,
                      tint: bool = False) -> dict[str, np.ndarray]:
    """train/<class>/NNNN<ext>, test/<class>/NNNN<ext> of random 32x32 RGB; returns the pixels per split.

    ``tint=True`` makes the classes learnable: class c's images are brighter in channel c.
    """
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in counts.items():
        images = rng.integers(0, 156, (len(CLASSES) * n, 32, 32, 3), dtype=np.uint8)
        if tint:
            images[np.arange(len(images)), :, :, np.arange(len(images)) // n] += 100
        pixels[split] = images
        for i, img in enumerate(images):
            folder = root / split / CLASSES[i // n]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i % n:04d}{ext}")
    return pixels


def make_tarball(root: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(root / split, arcname=split)
    return path


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_imagefolder_directory_gives_the_exact_pixels_and_sorted_labels(tmp_path, cache):
    pixels = write_imagefolder(tmp_path / "ds")
    ds = load_cifar10(tmp_path / "ds", cache_dir=cache)
    assert ds.classes == CLASSES
    np.testing.assert_array_equal(ds.train_x, pixels["train"])
    np.testing.assert_array_equal(ds.test_x, pixels["test"])
    np.testing.assert_array_equal(ds.train_y, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(ds.test_y, np.repeat([0, 1, 2], 2))
    assert ds.train_x.dtype == np.uint8 and ds.train_y.dtype == np.int64


def test_tarball_and_directory_of_jpegs_decode_identically(tmp_path, cache):
    write_imagefolder(tmp_path / "ds", ext=".jpg")
    from_dir = load_cifar10(tmp_path / "ds", cache_dir=cache)
    from_tar = load_cifar10(make_tarball(tmp_path / "ds", tmp_path / "ds.tar.gz"), cache_dir=cache)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(from_tar, name), getattr(from_dir, name))
    assert from_tar.train_x.shape == (12, 32, 32, 3)


def test_second_load_reads_the_cache_and_limits_pick_the_same_subset(tmp_path, cache, monkeypatch):
    write_imagefolder(tmp_path / "ds")
    tar = make_tarball(tmp_path / "ds", tmp_path / "ds.tar.gz")
    full = load_cifar10(tar, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    subset = load_cifar10(tar, cache_dir=cache, limit_train=5)   # decoded without a cache
    monkeypatch.setattr(D, "_decode_all", lambda *a: pytest.fail("decoded again despite the cache"))
    cached = load_cifar10(tar, cache_dir=cache, limit_train=5)
    keep = subset_indices(12, 5)
    for ds in (subset, cached):
        np.testing.assert_array_equal(ds.train_x, full.train_x[keep])
        np.testing.assert_array_equal(ds.train_y, full.train_y[keep])
        np.testing.assert_array_equal(ds.test_x, full.test_x)


def write_fake_torchvision_cifar(root: Path, monkeypatch) -> dict[str, np.ndarray]:
    """The official python format (pickled dicts of (N, 3072) rows), md5s registered."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 12)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    chunks = np.array_split(np.arange(12), 6)
    for name, idx in zip(names, chunks):
        rows = x[idx].transpose(0, 3, 1, 2).reshape(len(idx), 3072)   # channel planes, as the official files
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": y[idx].tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                     "frog", "horse", "ship", "truck"]}, f)
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in names}
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setitem(CIFAR10.meta, "md5", hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest())
    return {"train_x": x[:10], "train_y": y[:10], "test_x": x[10:], "test_y": y[10:]}


def test_torchvision_python_format_is_read_with_its_md5_checked(tmp_path, monkeypatch):
    expected = write_fake_torchvision_cifar(tmp_path, monkeypatch)
    ds = load_cifar10(tmp_path)
    for name, value in expected.items():
        np.testing.assert_array_equal(getattr(ds, name), value)
    assert ds.classes[0] == "airplane" and len(ds.classes) == 10
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "ab") as f:
        f.write(b"corrupted")
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("breakage, message", [
    (lambda root: __import__("shutil").rmtree(root / "test"), "no images under test/"),
    (lambda root: __import__("shutil").rmtree(root / "test" / "dog"), r"missing from test/: \['dog'\]"),
    (lambda root: Image.new("RGB", (64, 48)).save(root / "train" / "cat" / "big.png"),
     r"train/cat/big.png is 64x48 pixels, expected 32x32"),
    (lambda root: (root / "test" / "frog" / "0000.png").write_bytes(b"not an image"),
     r"test/frog/0000.png could not be decoded"),
    (lambda root: Image.new("RGB", (32, 32)).save(root / "train" / "loose.png"),
     r"train/loose.png is not inside a class folder"),
])
def test_bad_imagefolder_says_what_was_expected_where(tmp_path, cache, breakage, message):
    write_imagefolder(tmp_path / "ds")
    breakage(tmp_path / "ds")
    with pytest.raises(DataError, match=message):
        load_cifar10(tmp_path / "ds", cache_dir=cache)


def test_missing_path_and_broken_archive_give_clear_errors(tmp_path, cache):
    with pytest.raises(DataError, match=r"no CIFAR-10 data at .*nowhere.tar.gz: expected a .tar.gz"):
        load_cifar10(tmp_path / "nowhere.tar.gz", cache_dir=cache)
    bad = tmp_path / "half.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    with pytest.raises(DataError, match="is not a readable tar archive"):
        load_cifar10(bad, cache_dir=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CIFAR-10 in torchvision's format"):
        load_cifar10(tmp_path / "empty")


def test_augment_is_a_padded_crop_or_its_mirror_and_is_seeded():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    x = x.repeat(16, 1, 1, 1)
    out = augment(x, torch.Generator().manual_seed(0))
    again = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for b in range(len(x)):   # the reference: look for the crop among all 81 offsets and 2 mirrors
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(out[b], (lambda c: c.flip(2) if f else c)(padded[b, :, dy:dy + 32, dx:dx + 32]))]
        assert matches, f"image {b} is not a 4-pixel-padded crop (or its mirror) of its input"
        flips += matches[0][2]
    assert 0 < flips < len(x), "the flip should be random per image"


@pytest.mark.skipif(not D.SHARED_COPY.exists(), reason=f"the shared CIFAR-10 copy is not at {D.SHARED_COPY}")
def test_shared_copy_has_the_readme_counts_and_pixel_statistics():
    files = D._read_tar(D.SHARED_COPY)
    splits, classes = D._index(files, D.SHARED_COPY)
    assert classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert np.bincount(splits["train"][1]).tolist() == [5000] * 10
    assert np.bincount(splits["test"][1]).tolist() == [1000] * 10
    ds = load_cifar10(D.SHARED_COPY, limit_train=3000, limit_test=2000)
    # README: train mean 0.4913 0.4821 0.4465, std 0.2452 0.2428 0.2606; test mean 0.4941 0.4851 0.4504
    for x, mean, std in ((ds.train_x, (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)),
                         (ds.test_x, (0.4941, 0.4851, 0.4504), (0.2448, 0.2422, 0.2606))):
        pixels = x.reshape(-1, 3) / 255.0
        np.testing.assert_allclose(pixels.mean(0), mean, atol=0.01)
        np.testing.assert_allclose(pixels.std(0), std, atol=0.01)
