"""cifar.data: the pickle reader, its errors, the seeded split, and the batched augmentation."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from cifar import CLASSES
from cifar.data import (
    ARCHIVE_MD5,
    URL,
    DataError,
    augment,
    load_cifar10,
    load_test_split,
    make_splits,
    normalize,
    resolve_data_dir,
    split_indices,
    to_tensor,
)
from devkit.fake_cifar import BATCH_FOLDER, N_TEST, N_TRAIN_PER_BATCH, write_batch, write_fake_cifar10

# ---------------------------------------------------------------------------------------------
# Reading the official layout


def test_load_shapes_dtypes_and_classes(fake_data, cifar_root):
    d = fake_data
    assert d.train_images.shape == (5 * N_TRAIN_PER_BATCH, 32, 32, 3) and d.train_images.dtype == np.uint8
    assert d.test_images.shape == (N_TEST, 32, 32, 3) and d.test_images.dtype == np.uint8
    assert d.train_labels.shape == (5 * N_TRAIN_PER_BATCH,) and d.train_labels.dtype == np.int64
    assert d.test_labels.dtype == np.int64
    assert set(d.train_labels.tolist()) == set(range(10))
    assert d.classes == CLASSES
    assert Path(d.source) == (cifar_root / BATCH_FOLDER).resolve()


def test_planes_decode_to_nhwc(tmp_path):
    # Build the raw rows by the format's definition (R plane, G plane, B plane; each row-major),
    # not with the conftest helper, so a reader and a writer sharing one mistake cannot both pass.
    n = 6
    value = lambda i, y, x, c: (i * 31 + y * 7 + x * 3 + c * 101) % 256  # noqa: E731 - distinct per axis
    rows = np.zeros((n, 3072), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            for y in range(32):
                for x in range(32):
                    rows[i, c * 1024 + y * 32 + x] = value(i, y, x, c)
    folder = tmp_path / BATCH_FOLDER
    folder.mkdir()
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        write_batch(folder / name, rows, labels=range(n))

    d = load_cifar10(tmp_path)

    i, y, x, c = np.meshgrid(np.arange(n), np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    expected = value(i, y, x, c).astype(np.uint8)
    np.testing.assert_array_equal(d.test_images, expected)
    np.testing.assert_array_equal(d.train_images[:n], expected)
    # Spot check one pixel by hand: image 2, row 5, column 9, green.
    assert d.test_images[2, 5, 9, 1] == rows[2, 1 * 1024 + 5 * 32 + 9]
    np.testing.assert_array_equal(d.train_labels, np.tile(np.arange(n), 5))


def test_root_may_be_the_batch_folder_itself(fake_data, cifar_root):
    d = load_cifar10(cifar_root / BATCH_FOLDER)
    np.testing.assert_array_equal(d.train_images, fake_data.train_images)
    np.testing.assert_array_equal(d.test_labels, fake_data.test_labels)
    assert d.source == fake_data.source


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    # An empty env var means "not set", not the current directory.
    monkeypatch.setenv("CIFAR10_DIR", "")
    assert resolve_data_dir(None) == Path("data")


def test_load_uses_env_var_when_no_root(monkeypatch, cifar_root, fake_data):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_root))
    np.testing.assert_array_equal(load_cifar10().test_labels, fake_data.test_labels)


def test_missing_folder_says_how_to_get_the_data(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as e:
        load_cifar10(root)
    msg = str(e.value)
    assert str(root / BATCH_FOLDER) in msg
    assert "--download" in msg
    assert "--data-dir" in msg and "CIFAR10_DIR" in msg


def test_truncated_batch_is_named(cifar_copy):
    path = cifar_copy / BATCH_FOLDER / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as e:
        load_cifar10(cifar_copy)
    msg = str(e.value)
    assert str(path) in msg
    assert "truncated" in msg and "corrupt" in msg


def test_unreadable_batch_is_a_data_error(cifar_root, monkeypatch):
    import cifar.data as data_mod

    def denied(path, *args, **kwargs):  # what open() does on a file the user may not read (root may read all)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data_mod, "open", denied, raising=False)
    with pytest.raises(DataError, match=r"data_batch_1 cannot be read: Permission denied"):
        load_cifar10(cifar_root)


class _Evil:
    """Unpickling this runs a shell command: what a poisoned download could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_not_run(cifar_copy, tmp_path):
    # Control: the payload is live, plain pickle.loads runs it.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control), protocol=2))
    assert control.exists()

    marker = tmp_path / "pwned"
    path = cifar_copy / BATCH_FOLDER / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({"data": _Evil(marker), "labels": [0]}, f, protocol=2)
    with pytest.raises(DataError) as e:
        load_cifar10(cifar_copy)
    assert str(path) in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "batch, words",
    [
        ({"labels": [0, 1]}, "lacks 'data'"),
        ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, "expected uint8"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "2 images but 1 labels"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "outside 0..9"),
        ([1, 2, 3], "not a CIFAR-10 batch"),
    ],
)
def test_batches_of_the_wrong_shape_are_refused(cifar_copy, batch, words):
    path = cifar_copy / BATCH_FOLDER / "test_batch"
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(DataError, match=words) as e:
        load_cifar10(cifar_copy)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------
# --download, with torchvision's helper replaced (no network in tests)


def test_download_failure_is_a_clear_data_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path, download=True)
    msg = str(e.value)
    assert "Could not download" in msg and URL in msg and "URLError" in msg
    assert "--data-dir" in msg  # the way out when offline


def test_download_then_read_the_same_way(tmp_path, monkeypatch, fake_data):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def fake_download(url, download_root, md5=None, **kwargs):
        calls.append((url, md5))
        write_fake_cifar10(download_root)  # what the real archive unpacks to

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    d = load_cifar10(tmp_path / "fresh", download=True)
    assert calls == [(URL, ARCHIVE_MD5)]
    np.testing.assert_array_equal(d.train_images, fake_data.train_images)
    np.testing.assert_array_equal(d.test_labels, fake_data.test_labels)


def test_test_split_downloads_only_when_its_batch_is_missing(tmp_path, monkeypatch, fake_data):
    import torchvision.datasets.utils as tv_utils

    calls = []
    monkeypatch.setattr(tv_utils, "download_and_extract_archive",
                        lambda url, download_root, md5=None, **kw: calls.append(url) or write_fake_cifar10(download_root))
    _, labels, _ = load_test_split(tmp_path / "fresh", download=True)
    np.testing.assert_array_equal(labels, fake_data.test_labels)
    load_test_split(tmp_path / "fresh", download=True)  # now present: no second download
    assert calls == [URL]


def test_download_skipped_when_data_present(cifar_root, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def must_not_run(*args, **kwargs):
        raise AssertionError("downloaded although the data was there")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", must_not_run)
    assert len(load_cifar10(cifar_root, download=True).test_labels) == N_TEST


def test_download_into_the_batch_folder_itself(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_and_extract_archive",
                        lambda url, download_root, md5=None, **kw: write_fake_cifar10(download_root))
    d = load_cifar10(tmp_path / BATCH_FOLDER, download=True)
    assert len(d.test_labels) == N_TEST


# ---------------------------------------------------------------------------------------------
# The seeded split


def test_split_matches_the_report_randperm():
    train, val = split_indices(50000)
    assert len(train) == 45000 and len(val) == 5000
    perm = torch.randperm(50000, generator=torch.Generator().manual_seed(42)).numpy()
    np.testing.assert_array_equal(train, perm[:45000])
    np.testing.assert_array_equal(val, perm[45000:])


def test_split_is_the_reports_random_split():
    # The report did set_seed(42), then random_split(train, [45000, 5000]) on the global generator.
    torch.manual_seed(42)
    train_set, val_set = torch.utils.data.random_split(range(50000), [45000, 5000])
    train, val = split_indices(50000)
    np.testing.assert_array_equal(train, train_set.indices)
    np.testing.assert_array_equal(val, val_set.indices)


def test_split_is_disjoint_complete_and_deterministic():
    train, val = split_indices(50000)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(50000))
    again_train, again_val = split_indices(50000)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)


def test_split_depends_on_seed():
    _, val42 = split_indices(50000, seed=42)
    _, val7 = split_indices(50000, seed=7)
    assert not np.array_equal(np.sort(val42), np.sort(val7))


@pytest.mark.parametrize("val_size", [0, 400, 401])
def test_split_rejects_impossible_sizes(val_size):
    with pytest.raises(ValueError):
        split_indices(400, val_size=val_size)


def test_make_splits_takes_the_seeded_indices(fake_data):
    s = make_splits(fake_data, val_size=80, seed=42, limit_train=50)
    train_idx, val_idx = split_indices(400, 80, 42)
    # NCHW tensors of exactly those images, in that order; limit_train keeps the first N.
    np.testing.assert_array_equal(s.train_x.permute(0, 2, 3, 1).numpy(), fake_data.train_images[train_idx[:50]])
    np.testing.assert_array_equal(s.val_y.numpy(), fake_data.train_labels[val_idx])
    assert s.train_x.shape == (50, 3, 32, 32) and s.val_x.shape == (80, 3, 32, 32)
    assert s.test_x.shape == (N_TEST, 3, 32, 32)
    assert s.split_seed == 42


# ---------------------------------------------------------------------------------------------
# Augmentation: RandomCrop(32, padding=4) + RandomHorizontalFlip, batched


def _position_image() -> torch.Tensor:
    """1×3×32×32 uint8 whose red channel is row+1 and green channel column+1 (0 is left for padding)."""
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[0, 0] = (torch.arange(32) + 1)[:, None]
    img[0, 1] = (torch.arange(32) + 1)[None, :]
    img[0, 2] = 200
    return img


def _recover_params(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dy, dx, flip) of each augmented position image, read back from the pixel values.

    Output row i shows padded row dy+i, i.e. source row dy+i-4; unflipped, output column j shows
    source column dx+j-4, flipped it shows dx+(31-j)-4 (crop, then mirror).
    """
    rows = out[:, 0, :, 16].long() - 1  # source row of each output row, -1 in the padding
    cols = out[:, 1, 16, :].long() - 1
    # Output rows/columns 16 and 17 are never padding: the window is at most 4 pixels off centre.
    assert torch.all(rows[:, 16] >= 0) and torch.all(cols[:, 16:18] >= 0)
    dy = rows[:, 16] - 16 + 4
    flip = cols[:, 17] < cols[:, 16]
    dx = torch.where(flip, cols[:, 16] - 15 + 4, cols[:, 16] - 16 + 4)
    return dy, dx, flip


def _reference_crop_flip(img: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """The transform by its definition: zero-pad by 4, cut a 32×32 window at (dy, dx), mirror if asked."""
    crop = torch.nn.functional.pad(img, (4, 4, 4, 4))[..., dy : dy + 32, dx : dx + 32]
    return crop.flip(-1) if flip else crop


@pytest.fixture(scope="module")
def many_draws():
    """12,000 augmentations of the position image (in chunks, to keep index tensors small)."""
    gen = torch.Generator().manual_seed(0)
    img = _position_image()
    return img, torch.cat([augment(img.expand(4000, -1, -1, -1), gen) for _ in range(3)])


def test_augment_is_exactly_a_padded_crop_and_flip(many_draws):
    img, out = many_draws
    assert out.dtype == torch.uint8 and out.shape == (12000, 3, 32, 32)
    dy, dx, flip = _recover_params(out)
    assert dy.min() >= 0 and dy.max() <= 8 and dx.min() >= 0 and dx.max() <= 8
    # Every output must equal the reference transform with its recovered parameters, padding
    # included: zeros exactly where the window leaves the image, the image everywhere else.
    # All 9×9×2 possible outputs, indexed as (dy * 9 + dx) * 2 + flip.
    table = torch.stack([_reference_crop_flip(img[0], a, b, f)
                         for a in range(9) for b in range(9) for f in (False, True)])
    expected = table[(dy * 9 + dx) * 2 + flip.long()]
    assert torch.equal(out, expected)


def test_augment_offsets_uniform_and_flips_half(many_draws):
    _, out = many_draws
    dy, dx, flip = _recover_params(out)
    counts = torch.bincount(dy * 9 + dx, minlength=81).numpy()
    assert counts.min() > 0, "some crop offset (dy, dx) in 0..8 × 0..8 never happens"
    # Uniform over the 81 offsets: Pearson's chi-square below chi2(80)'s 99.9% quantile (124.8).
    # The draws are seeded, so this is deterministic; the bound leaves room for a new torch RNG.
    expected = counts.sum() / 81
    assert ((counts - expected) ** 2 / expected).sum() < 124.8
    # 12,000 fair coin flips: sd 0.0046, so ±0.02 is 4.3 sd (seeded, so deterministic here).
    assert 0.48 < flip.float().mean().item() < 0.52
    # Flip is independent of the offset: about half flipped whatever the horizontal offset (~1,333
    # draws each: sd 0.014, ±0.06 is 4.4 sd).
    for b in range(9):
        assert 0.44 < flip[dx == b].float().mean().item() < 0.56


def test_augment_padding_zero_where_expected(many_draws):
    _, out = many_draws
    dy, dx, flip = _recover_params(out)
    # A window starting above the image (dy < 4) gives 4-dy zero rows on top, one starting below
    # (dy > 4) gives dy-4 at the bottom; the same for columns, mirrored when flipped.
    for k, (y0, x0, f) in enumerate(zip(dy[:500].tolist(), dx[:500].tolist(), flip[:500].tolist())):
        top, bottom = max(0, 4 - y0), max(0, y0 - 4)
        left, right = max(0, 4 - x0), max(0, x0 - 4)
        if f:
            left, right = right, left
        img = out[k]
        assert torch.all(img[:, :top] == 0) and torch.all(img[:, 32 - bottom :] == 0)
        assert torch.all(img[:, :, :left] == 0) and torch.all(img[:, :, 32 - right :] == 0)
        inner = img[:, top : 32 - bottom, left : 32 - right]
        assert torch.all(inner[2] == 200)  # no padding inside the window


def test_augment_matches_torchvision_distribution():
    from torchvision.transforms import v2

    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    n = 3000
    ours = augment(img[None].expand(n, -1, -1, -1), torch.Generator().manual_seed(1)).float()
    torch.manual_seed(1)
    tv = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(0.5)])
    theirs = torch.stack([tv(img) for _ in range(n)]).float()
    # Per-pixel mean and std over the draws agree within sampling error (z < 5 at every pixel;
    # with 3072 pixels that is still a loose bound, but a missing flip or a wrong pad breaks it).
    m1, m2 = ours.mean(0), theirs.mean(0)
    s1, s2 = ours.std(0), theirs.std(0)
    se_mean = torch.sqrt((s1**2 + s2**2) / n) + 1e-6
    assert ((m1 - m2).abs() / se_mean).max() < 5
    se_std = torch.sqrt((s1**2 + s2**2) / (2 * n)) + 1e-6
    assert ((s1 - s2).abs() / se_std).max() < 6
    assert (m1 - m2).abs().mean() < 2.0  # on the 0..255 scale


def test_augment_depends_on_generator_only():
    x = to_tensor(np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_normalize_maps_to_minus_one_one():
    x = torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8).view(1, 1, 2, 3).expand(1, 3, 2, 3)
    y = normalize(x)
    assert y.dtype == torch.float32
    assert y[0, 0, 0, 0] == -1.0 and y[0, 0, 1, 2] == 1.0
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert torch.equal(x[0, 0, 0], torch.tensor([0, 1, 127], dtype=torch.uint8))  # input untouched


def test_normalize_matches_totensor_then_normalize():
    from torchvision.transforms import v2

    x = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8))
    ref = v2.Normalize((0.5,) * 3, (0.5,) * 3)(v2.ToDtype(torch.float32, scale=True)(x))
    torch.testing.assert_close(normalize(x), ref, atol=1e-6, rtol=0)


def test_to_tensor_is_nchw_of_nhwc(fake_data):
    t = to_tensor(fake_data.test_images)
    assert t.shape == (N_TEST, 3, 32, 32)
    assert t[3, 2, 10, 20] == fake_data.test_images[3, 10, 20, 2]



def test_load_test_split_reads_only_the_test_batch(cifar_root, tmp_path):
    images, labels, path = load_test_split(cifar_root)
    full = load_cifar10(cifar_root)
    assert path.name == "test_batch" and np.array_equal(images, full.test_images) and np.array_equal(labels, full.test_labels)
    # Without the training batches it still works: the app needs nothing else.
    only_test = tmp_path / "cifar-10-batches-py"
    only_test.mkdir()
    shutil.copy(path, only_test / "test_batch")
    assert np.array_equal(load_test_split(tmp_path)[0], images)
    with pytest.raises(DataError, match="test_batch is missing"):
        load_test_split(tmp_path / "nowhere")
