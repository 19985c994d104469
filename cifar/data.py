"""CIFAR-10 from the official Python pickle layout, the seeded split, and batched augmentation.

The whole dataset lives in memory as uint8 tensors (180 MB). Augmentation runs on whole batches
with tensor ops, because per-image PIL transforms in DataLoader workers cost more than the
CustomCNN itself on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifar import CLASSES

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
# The official archive, as torchvision's CIFAR10 class downloads it.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# What a test batch is, told by its md5: the official archive (as torchvision's CIFAR10 lists it), or a
# known copy. Numbers measured on a copy must say so, and its indices may not be the official ones.
OFFICIAL_TEST_MD5 = "40351d587109b95175f43aff81a1287e"
KNOWN_COPIES = {
    # ../shared/cifar10: every image JPEG-compressed once (quality 75, 4:2:0); the test set is grouped
    # by class (the official order within each class).
    "2738f3d4f9f1787fa486f3879413ad7b": "CIFAR-10 (JPEG re-encoded copy)",
}
DEFAULT_DIR = "data"
ENV_VAR = "CIFAR10_DIR"
PAD = 4  # RandomCrop(32, padding=4)


class DataError(RuntimeError):
    """The data folder is missing, incomplete or corrupt; the message says how to fix it."""


@dataclass(frozen=True)
class Cifar10:
    """The official train and test sets: uint8 NHWC images, int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (dicts, lists, numpy arrays), never arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a CIFAR batch")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $CIFAR10_DIR, else ./data."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _batch_dir(root: Path) -> Path:
    # Accept both the folder that holds cifar-10-batches-py and that folder itself.
    return root if root.name == BATCH_FOLDER else root / BATCH_FOLDER


def _how_to_get(root: Path) -> str:
    return (
        f"Get the data in one of two ways:\n"
        f"  1. download it: add --download (fetches {URL} into {root})\n"
        f"  2. point at an existing copy: --data-dir PATH or {ENV_VAR}=PATH, where PATH holds {BATCH_FOLDER}/"
    )


def _read_batch(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 not found: {path} is missing.\n{_how_to_get(root)}")
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as e:
        raise DataError(
            f"CIFAR-10 batch {path} is truncated or corrupt ({type(e).__name__}: {e}).\n"
            f"Delete {path.parent} and get the data again.\n{_how_to_get(root)}"
        ) from None
    except OSError as e:  # permission denied, an I/O error on a bad disk
        raise DataError(f"CIFAR-10 batch {path} cannot be read: {e.strerror or e}.") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict.")
    return batch


def _decode(batch: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A batch dict → (N, 32, 32, 3) uint8 images and (N,) int64 labels, checked."""
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch: it lacks 'data' or 'labels'.")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072).")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels; the file is corrupt.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels outside 0..9; this is not CIFAR-10.")
    # Rows hold the R, G and B planes one after the other: N×3×32×32 → NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def download_archive(root: Path) -> None:
    """Fetch and unpack the official archive into root with torchvision's helper (md5-checked)."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(root), md5=ARCHIVE_MD5)
    except Exception as e:  # URLError, socket errors, md5 mismatch: all mean "no data"
        raise DataError(
            f"Could not download CIFAR-10 from {URL} into {root}: {type(e).__name__}: {e}\n"
            f"If this machine is offline, copy {BATCH_FOLDER}/ there by hand and pass --data-dir."
        ) from None


def _download_if_missing(folder: Path, files: tuple[str, ...]) -> None:
    if not all((folder / f).is_file() for f in files):
        # The archive unpacks into cifar-10-batches-py/, so download next to that folder.
        download_archive(folder.parent)


def load_test_split(root: str | os.PathLike | None = None,
                    download: bool = False) -> tuple[np.ndarray, np.ndarray, Path]:
    """Only the 10,000 test images (N, 32, 32, 3) uint8 and labels, and the file read: 30 MB instead
    of load_cifar10's 180 MB (the app, cifar.evaluate). DataError when the file is missing or broken."""
    root = resolve_data_dir(root)
    path = cifar_test_file(root)
    if download:
        _download_if_missing(path.parent, (TEST_FILE,))
    images, labels = _decode(_read_batch(path, root), path)
    return images, labels, path


def describe_source(test_file: str | os.PathLike) -> dict[str, object]:
    """{"name", "official", "test_md5"} of a test batch: which CIFAR-10 numbers measured on it come from.

    `official` is True only for the official archive's bytes; only then are its indices the official ones.
    """
    digest = hashlib.md5()
    with open(test_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    md5 = digest.hexdigest()
    if md5 == OFFICIAL_TEST_MD5:
        name = "CIFAR-10 (official archive)"
    else:
        name = KNOWN_COPIES.get(md5, "CIFAR-10 (not the official archive: its test batch differs)")
    return {"name": name, "official": md5 == OFFICIAL_TEST_MD5, "test_md5": md5}


def cifar_test_file(root: str | os.PathLike | None = None) -> Path:
    """Where the test batch lives under a data folder (see resolve_data_dir)."""
    return _batch_dir(resolve_data_dir(root)) / TEST_FILE


def load_cifar10(root: str | os.PathLike | None = None, download: bool = False) -> Cifar10:
    """Read the official pickle layout under root (see resolve_data_dir); optionally download it first."""
    root = resolve_data_dir(root)
    folder = _batch_dir(root)
    if download:
        _download_if_missing(folder, (*TRAIN_FILES, TEST_FILE))
    train = [_decode(_read_batch(folder / f, root), folder / f) for f in TRAIN_FILES]
    test_x, test_y = _decode(_read_batch(folder / TEST_FILE, root), folder / TEST_FILE)
    classes = CLASSES
    if (folder / META_FILE).is_file():
        names = _read_batch(folder / META_FILE, root).get("label_names")
        if names and len(names) == len(CLASSES):
            classes = tuple(names)
    return Cifar10(
        train_images=np.concatenate([x for x, _ in train]),
        train_labels=np.concatenate([y for _, y in train]),
        test_images=test_x,
        test_labels=test_y,
        classes=classes,
        source=str(folder.resolve()),
    )


def split_indices(n: int, val_size: int = 5000, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices into the official training set.

    Same as the report's `random_split(train, [45000, 5000])` right after `set_seed(42)`: one
    torch.randperm from a seeded generator, train first. torch's CPU generator gives the same
    permutation on every machine.
    """
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return perm[: n - val_size], perm[n - val_size :]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC numpy → uint8 NCHW tensor (a view in channels_last memory, no copy)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → float in [-1, 1]: ToTensor() then Normalize((0.5,)*3, (0.5,)*3), in one op."""
    return x.float().mul_(2.0 / 255.0).sub_(1.0)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RandomCrop(32, padding=4) + RandomHorizontalFlip(0.5) on a uint8 NCHW batch, all at once.

    Each image gets its own offset (0..8 in each axis, uniform) and flip, as with torchvision's
    per-image transforms; the zero padding is pixel value 0, which normalises to -1 as in the report.

    The batch may live on any device (the GPU, in training on CUDA); the random numbers come from
    `generator` (the CPU's in training) and only they move, 3 numbers per image, so the same seed
    gives the same crops and flips on every device.
    """
    n, c, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator).to(dev)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # n×1×h×1
    cols = torch.arange(w, device=dev).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    cols = cols[:, None, None, :]  # n×1×1×w
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows, cols]


@dataclass(frozen=True)
class Splits:
    """In-memory uint8 NCHW tensors for train / val / test, and how they were made."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str
    split_seed: int


def make_splits(data: Cifar10, val_size: int = 5000, seed: int = 42, limit_train: int | None = None) -> Splits:
    """The seeded 45k/5k split of the official training set, plus the test set."""
    train_idx, val_idx = split_indices(len(data.train_labels), val_size, seed)
    if limit_train:
        train_idx = train_idx[:limit_train]
    images, labels = to_tensor(data.train_images), torch.from_numpy(data.train_labels)
    return Splits(
        train_x=images[torch.from_numpy(train_idx)].contiguous(),
        train_y=labels[torch.from_numpy(train_idx)],
        val_x=images[torch.from_numpy(val_idx)].contiguous(),
        val_y=labels[torch.from_numpy(val_idx)],
        test_x=to_tensor(data.test_images).contiguous(),
        test_y=torch.from_numpy(data.test_labels),
        classes=data.classes,
        source=data.source,
        split_seed=seed,
    )
