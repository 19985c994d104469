"""cifar.checkpoints: self-describing .safetensors files and resume state, loaded without running code."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cifar.checkpoints import (
    FORMAT,
    META_KEY,
    CheckpointError,
    atomic_write,
    load_model,
    load_state,
    read_metadata,
    save_model,
    save_state,
)
from cifar.models import build_model

META = {"model": "cnn", "builder_kwargs": {"dropout": 0.4}, "classes": ["a"] * 10, "val_acc": 0.5,
        "history": [{"epoch": 1, "val_acc": 0.5}]}


def _trained_like_cnn() -> torch.nn.Module:
    """A CustomCNN whose BatchNorm buffers are not the defaults, so a lost buffer would show."""
    torch.manual_seed(0)
    model = build_model("cnn", dropout=0.4)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # moves running_mean/var and num_batches_tracked
    return model.eval()


@pytest.fixture(scope="module")
def cnn():
    return _trained_like_cnn()


@pytest.fixture(scope="module")
def cnn_file(cnn, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "cnn.safetensors"
    save_model(cnn, path, META)
    return path


def _header_only_file(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """A safetensors file with our metadata header around arbitrary tensors (bypasses save_model's checks)."""
    save_file(tensors, str(path), metadata={META_KEY: json.dumps({"format": FORMAT, **meta})})
    return path


def test_round_trip_same_outputs_and_metadata(cnn, cnn_file):
    model, meta = load_model(cnn_file)
    assert not model.training
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), cnn(x), rtol=0, atol=0)
    for k, v in cnn.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert meta == {"format": FORMAT, **META}
    assert read_metadata(cnn_file) == meta


def test_fp16_weights_load_into_fp32_model(cnn, tmp_path):
    path = tmp_path / "half.safetensors"
    save_model(cnn, path, META, dtype=torch.float16)
    assert path.stat().st_size < 0.6 * (4_577_290 * 4)  # really stored at half size
    model, _ = load_model(path)
    for k, v in model.state_dict().items():
        ref = cnn.state_dict()[k]
        if ref.is_floating_point():
            assert v.dtype == torch.float32, k
            assert torch.equal(v, ref.half().float()), k
        else:  # num_batches_tracked stays an integer
            assert v.dtype == ref.dtype and torch.equal(v, ref), k
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32)
        # fp16 weights move these logits (|logit| < 0.1) by at most 5e-5 (measured over 3 seeds); 10x that.
        torch.testing.assert_close(model(x), cnn(x), rtol=0, atol=5e-4)


def test_save_model_requires_a_registered_name(cnn, tmp_path):
    with pytest.raises(CheckpointError, match="'vgg'"):
        save_model(cnn, tmp_path / "x.safetensors", {**META, "model": "vgg"})
    assert not (tmp_path / "x.safetensors").exists()


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match="no such checkpoint") as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_truncated_file(cnn_file, tmp_path):
    path = tmp_path / "cut.safetensors"
    raw = cnn_file.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(path) in str(e.value) and "truncated" in str(e.value)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_plain_safetensors_without_our_metadata(cnn, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="not a cifar-explain checkpoint") as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_other_architecture_is_refused(cnn_file):
    with pytest.raises(CheckpointError) as e:
        load_model(cnn_file, expect="resnet18")
    msg = str(e.value)
    assert str(cnn_file) in msg and "'cnn'" in msg and "'resnet18'" in msg
    load_model(cnn_file, expect="cnn")  # the right one still loads


def test_unknown_model_name_in_metadata(cnn, tmp_path):
    path = _header_only_file(tmp_path / "vgg.safetensors", {"w": torch.zeros(1)}, {**META, "model": "vgg"})
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(path) in str(e.value) and "'vgg'" in str(e.value)


def test_missing_key(cnn, tmp_path):
    state = {k: v.contiguous() for k, v in cnn.state_dict().items()}
    del state["fc2.weight"]
    path = _header_only_file(tmp_path / "partial.safetensors", state, META)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg and "fc2.weight" in msg and "1 missing" in msg


def test_wrong_shape(cnn, tmp_path):
    # Same keys, other sizes: a CustomCNN built for 100 classes is not a CIFAR-10 one.
    state = {k: v.contiguous() for k, v in build_model("cnn", num_classes=100).state_dict().items()}
    path = _header_only_file(tmp_path / "c100.safetensors", state, META)
    with pytest.raises(CheckpointError, match="wrong shape") as e:
        load_model(path)
    assert str(path) in str(e.value) and "fc2" in str(e.value)


def test_builder_kwargs_not_a_mapping(cnn, tmp_path):
    path = _header_only_file(tmp_path / "odd.safetensors", {"w": torch.zeros(1)}, {**META, "builder_kwargs": None})
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_metadata_of_another_format(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={META_KEY: json.dumps({"format": "cifar-explain/99"})})
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        read_metadata(path)


# ---------------------------------------------------------------------------------------------
# Resume state (.pt)


class _Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_state_round_trip(tmp_path):
    state = {"format": FORMAT, "epoch": 3, "model": {"w": torch.arange(4.0)}, "history": [{"val_acc": 0.5}],
             "rng": torch.Generator().manual_seed(1).get_state()}
    save_state(state, tmp_path / "resume.pt")
    back = load_state(tmp_path / "resume.pt")
    assert back["epoch"] == 3 and back["history"] == [{"val_acc": 0.5}]
    assert torch.equal(back["model"]["w"], torch.arange(4.0)) and torch.equal(back["rng"], state["rng"])
    assert [p.name for p in tmp_path.iterdir()] == ["resume.pt"]  # no temp file left


def test_state_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "resume.pt"
    torch.save({"format": FORMAT, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        load_state(path)
    assert str(path) in str(e.value)
    assert not marker.exists()
    # Control: the payload is live, an unsafe torch.load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_state_missing_truncated_or_foreign(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_state(tmp_path / "none.pt")
    good = tmp_path / "good.pt"
    save_state({"format": FORMAT, "w": torch.randn(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError) as e:
        load_state(cut)
    assert str(cut) in str(e.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a cifar-explain resume state"):
        load_state(foreign)


def test_empty_state_file(tmp_path):
    # A zero-length file is what a crash after rename but before the data reached disk leaves.
    path = tmp_path / "resume.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_state(path)
    assert str(path) in str(e.value)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "resume.pt"
    save_state({"format": FORMAT, "epoch": 1}, path)

    def crash(tmp):
        Path(tmp).write_bytes(b"half a fi")  # a write that dies midway
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_state(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["resume.pt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    # Not mkstemp's owner-only 0600: an app served as another user must be able to read a checkpoint.
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "m.safetensors", lambda tmp: Path(tmp).write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.safetensors").stat().st_mode) == 0o644
