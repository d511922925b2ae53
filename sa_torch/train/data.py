"""CIFAR-10 for the training pipeline: decode once, cache as uint8, augment on the device.

Where the images come from (``load_cifar10(source)``):

- a ``.tar.gz`` in the ImageFolder layout ``train/<class>/*.jpg``, ``test/<class>/*.jpg``
  (this project's JPEG copy, ``../shared/data/cifar10-jpeg.tar.gz``), read straight
  from the archive;
- a directory in that same layout;
- a torchvision CIFAR-10 root: a directory holding ``cifar-10-batches-py/`` (or where
  ``torchvision.datasets.CIFAR10`` downloads and md5-checks the official archive
  when ``download=True``).

Decoded images are cached as uint8 arrays in an ``.npz`` (``data/cache/`` beside the
repository, git-ignored), so the 13 s JPEG decode happens once per machine.

Shapes: images ``x`` are (N, 32, 32, 3) uint8 as stored; on the device a batch is
(B, 3, 32, 32). Labels ``y`` are (N,) int64, the index of the class in ``classes``
(alphabetical, which for CIFAR-10 is also the official label order).
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_COPY = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CACHE_DIR = REPO_ROOT / "data" / "cache"
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGE_SIZE = 32
# Per-channel statistics of the original CIFAR-10 training set, pixels scaled to [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
LAYOUT = "train/<class>/*.jpg and test/<class>/*.jpg"


class DataError(ValueError):
    """The data at a path is missing or not in the expected layout (message says which)."""


@dataclass
class CIFARArrays:
    """One data set in memory. ``train_x``/``test_x`` (N, 32, 32, 3) uint8, ``*_y`` (N,) int64."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __repr__(self) -> str:
        return (f"CIFARArrays(train={len(self.train_y)}, test={len(self.test_y)}, "
                f"classes={len(self.classes)}, source={self.source!r})")


def default_data_path() -> Path:
    """``$SA_CIFAR_DATA`` if set, else the shared JPEG copy beside the repository."""
    return Path(os.environ.get("SA_CIFAR_DATA", SHARED_COPY))


def subset_indices(n: int, limit: int | None) -> np.ndarray:
    """The same ``limit`` of ``n`` examples for every loader: a fixed random draw, in order."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"limit={limit} must be a positive number of examples")
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def load_cifar10(source: str | os.PathLike | None = None, *, limit_train: int | None = None,
                 limit_test: int | None = None, download: bool = False,
                 cache_dir: str | os.PathLike | None = None) -> CIFARArrays:
    """Load CIFAR-10 (or any 32x32 data set in the same layout) as uint8 arrays.

    ``limit_train``/``limit_test`` keep a fixed subset (see :func:`subset_indices`); with
    a limit and no cache yet, only the kept images are decoded.
    """
    path = Path(source) if source is not None else default_data_path()
    if path.is_dir() and not any((path / s).is_dir() for s in SPLITS):
        return _load_torchvision(path, download, limit_train, limit_test)
    if not path.exists():
        raise DataError(
            f"no CIFAR-10 data at {path}: expected a .tar.gz or a directory holding {LAYOUT}, "
            f"or a torchvision root with cifar-10-batches-py/ (pass --data PATH, set "
            f"SA_CIFAR_DATA, or use --data data/ --download where there is internet)")
    cache = _cache_file(path, Path(cache_dir) if cache_dir is not None else CACHE_DIR)
    limits = {"train": limit_train, "test": limit_test}
    if cache.exists():
        with np.load(cache) as z:
            arrays = {k: z[k] for k in z.files}
        classes = tuple(str(c) for c in arrays.pop("classes"))
        for split in SPLITS:
            keep = subset_indices(len(arrays[f"{split}_y"]), limits[split])
            arrays[f"{split}_x"], arrays[f"{split}_y"] = arrays[f"{split}_x"][keep], arrays[f"{split}_y"][keep]
        return CIFARArrays(**arrays, classes=classes, source=str(path))
    files = _read_tar(path) if path.is_file() else _list_dir(path)
    splits, classes = _index(files, path)
    arrays = {}
    for split in SPLITS:
        names, labels = splits[split]
        keep = subset_indices(len(names), limits[split])
        arrays[f"{split}_x"] = _decode_all([(n, files[n]) for n in np.asarray(names)[keep]], path)
        arrays[f"{split}_y"] = labels[keep]
    if limit_train is None and limit_test is None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, classes=np.array(classes), **arrays)
        os.replace(tmp, cache)
    return CIFARArrays(**arrays, classes=classes, source=str(path))


def _cache_file(path: Path, cache_dir: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir / f"{path.name.split('.')[0]}-{key}.npz"


def _read_tar(path: Path) -> dict[str, bytes]:
    """Every image file of the archive, ``'train/cat/0001.jpg' -> bytes``, in one pass."""
    try:
        with tarfile.open(path, "r:*") as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read()
                    for m in tar if m.isfile() and m.name.lower().endswith(IMAGE_EXTENSIONS)}
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path} is not a readable tar archive ({err}); expected {LAYOUT} inside") from None


def _list_dir(path: Path) -> dict[str, str]:
    """Every image file under the directory, ``'train/cat/0001.jpg' -> its full path``."""
    return {p.relative_to(path).as_posix(): str(p) for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


def _index(files, path: Path) -> tuple[dict[str, tuple[list[str], np.ndarray]], tuple[str, ...]]:
    """Check the layout; per split the sorted file names and their labels, and the classes."""
    by_split: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for name in files:
        parts = name.split("/")
        if parts[0] not in SPLITS:
            continue
        if len(parts) != 3:
            raise DataError(f"{path}: image {name} is not inside a class folder; expected {LAYOUT}")
        by_split[parts[0]].setdefault(parts[1], []).append(name)
    for split in SPLITS:
        if not by_split[split]:
            raise DataError(f"{path}: no images under {split}/; expected {LAYOUT}")
    classes = tuple(sorted(by_split["train"]))
    missing = sorted(set(classes) - set(by_split["test"]))
    extra = sorted(set(by_split["test"]) - set(classes))
    if missing or extra:
        raise DataError(f"{path}: train/ and test/ must hold the same class folders; "
                        f"missing from test/: {missing}, missing from train/: {extra}")
    splits = {}
    for split in SPLITS:
        names = [n for c in classes for n in sorted(by_split[split][c])]
        labels = np.repeat(np.arange(len(classes)), [len(by_split[split][c]) for c in classes])
        splits[split] = (names, labels.astype(np.int64))
    return splits, classes


def _decode(item: tuple[str, bytes | str]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    name, data = item
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(f"{name} is {img.size[0]}x{img.size[1]} pixels, "
                                f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{name} could not be decoded as an image ({err})") from None


def _decode_all(items: list[tuple[str, bytes | str]], path: Path) -> np.ndarray:
    """(N, 32, 32, 3) uint8; many images are decoded by a pool of processes."""
    workers = min(os.cpu_count() or 1, 16)
    try:
        if len(items) < 4096 or workers < 3:
            images = [_decode(item) for item in items]
        else:
            with ProcessPoolExecutor(workers) as pool:
                images = list(pool.map(_decode, items, chunksize=512))
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


def _load_torchvision(root: Path, download: bool, limit_train, limit_test) -> CIFARArrays:
    """The official python-format archive through ``torchvision.datasets.CIFAR10`` (md5-checked)."""
    from torchvision.datasets import CIFAR10

    arrays = {}
    for split, limit in (("train", limit_train), ("test", limit_test)):
        try:
            ds = CIFAR10(str(root), train=split == "train", download=download)
        except RuntimeError as err:
            raise DataError(
                f"{root}: no CIFAR-10 in torchvision's format ({err}); expected "
                f"{root / 'cifar-10-batches-py'} with data_batch_1..5 and test_batch "
                f"(download=True fetches the official archive), or {LAYOUT}") from None
        keep = subset_indices(len(ds.targets), limit)
        arrays[f"{split}_x"] = ds.data[keep]
        arrays[f"{split}_y"] = np.asarray(ds.targets, dtype=np.int64)[keep]
    return CIFARArrays(**arrays, classes=tuple(ds.classes), source=str(root))


class DeviceData:
    """One split on the device: x (N, 3, 32, 32) uint8, y (N,) int64; batches are made there."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device | str,
                 channels_last: bool = False):
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).contiguous()
        self.y = torch.from_numpy(np.asarray(y)).to(device)
        self.device = self.x.device
        self.channels_last = channels_last
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None):
        """Images ``index`` as normalised float (B, 3, 32, 32), augmented when a generator is given."""
        x = self.x[index].float().div_(255)
        if generator is not None:
            x = augment(x, generator)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[index]


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad`` zero pixels each side, then a random horizontal flip.

    One gather for the whole batch: image b's output pixel (i, j) is the padded pixel
    (dy_b + i, dx_b + j), or (dy_b + i, dx_b + W - 1 - j) when b is flipped.
    x: (B, C, H, W) float -> (B, C, H, W).
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)
    flip = torch.rand(b, 1, generator=generator, device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev)                                    # (B, H)
    cols = dx + torch.where(flip, torch.arange(w - 1, -1, -1, device=dev),
                            torch.arange(w, device=dev))                      # (B, W)
    return padded[torch.arange(b, device=dev)[:, None, None, None],
                  torch.arange(c, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def toy_cifar(train_per_class: int = 200, test_per_class: int = 50, seed: int = 0) -> CIFARArrays:
    """A tiny stand-in for CIFAR-10 where none is available: 32x32 noise, tinted per class.

    Class c's images lean towards one of ten colours, so a network can learn them in a few
    epochs; it shows the pipeline working, nothing about real images.
    """
    rng = np.random.default_rng(seed)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    palette = rng.integers(40, 216, (len(classes), 3))
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        y = np.repeat(np.arange(len(classes)), per_class)
        noise = rng.normal(0, 50, (len(y), IMAGE_SIZE, IMAGE_SIZE, 3))
        arrays[f"{split}_x"] = np.clip(palette[y][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        arrays[f"{split}_y"] = y.astype(np.int64)
    return CIFARArrays(**arrays, classes=classes, source="toy (generated)")
