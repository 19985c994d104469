"""cifar.checkpoints exactly: where the temporary file lives, the builder kwargs a checkpoint carries,
the messages a user reads, and a run's file names (mutants test_checkpoints.py let live, scripts/mutation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cifar.checkpoints import (META_KEY, CheckpointError, RunFiles, atomic_write, default_run_dir, evaluations_in,
                               load_model, read_metadata, run_files, save_model)
from cifar.models import build_model

META = {"model": "cnn", "builder_kwargs": {"dropout": 0.4}}


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return build_model("cnn", dropout=0.4).eval()


def header_file(path, tensors, meta):
    save_file(tensors, str(path), metadata={META_KEY: json.dumps({"format": "cifar-explain/1", **meta})})
    return path


def test_atomic_write_makes_missing_folders_and_writes_beside_the_target(tmp_path):
    target = tmp_path / "a" / "b" / "resume.pt"
    seen = []

    def write(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"state")

    atomic_write(target, write)
    assert target.read_bytes() == b"state"
    (tmp,) = seen  # a hidden temporary in the same folder: os.replace is atomic only within one file system
    assert str(tmp).startswith(str(target.parent / ".resume.pt.")) and str(tmp).endswith(".tmp")
    assert [p.name for p in target.parent.iterdir()] == ["resume.pt"]


def test_builder_kwargs_rebuild_the_model_they_describe(cnn, tmp_path):
    plain = build_model("cnn", dropout=0.0)
    save_model(plain, tmp_path / "p.safetensors", {"model": "cnn", "builder_kwargs": {"dropout": 0.0}})
    model, _ = load_model(tmp_path / "p.safetensors")
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.0]


def test_a_checkpoint_without_builder_kwargs_uses_the_builders_defaults(cnn, tmp_path):
    path = header_file(tmp_path / "old.safetensors", {k: v.contiguous() for k, v in cnn.state_dict().items()},
                       {"model": "cnn"})
    model, _ = load_model(path)
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.4]


def test_builder_kwargs_of_the_wrong_type_say_which(tmp_path):
    path = header_file(tmp_path / "odd.safetensors", {"w": torch.zeros(1)}, {**META, "builder_kwargs": [0.4]})
    with pytest.raises(CheckpointError, match=r"metadata 'builder_kwargs' must be a mapping, got list$"):
        load_model(path)


def test_load_model_puts_the_model_on_the_device_asked_for(cnn, tmp_path):
    save_model(cnn, tmp_path / "c.safetensors", META)
    model, _ = load_model(tmp_path / "c.safetensors", device="meta")
    assert next(model.parameters()).device.type == "meta" and not model.training


@pytest.mark.parametrize("meta, shown", [({"format": "other/9"}, "'other/9'"), ([1, 2], "[1, 2]")])
def test_an_unknown_format_is_named(tmp_path, meta, shown):
    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(CheckpointError, match=rf": unsupported checkpoint format {__import__('re').escape(shown)}$"):
        read_metadata(path)


def test_metadata_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={META_KEY: "{not json"})
    with pytest.raises(CheckpointError, match=r"its metadata is not valid JSON \(") as e:
        read_metadata(path)
    assert str(e.value).startswith(f"{path}: ")


def test_missing_and_unexpected_keys_list_three_of_each(cnn, tmp_path):
    state = {k: v.contiguous() for k, v in cnn.state_dict().items()}
    missing = sorted(state)[:5]
    for k in missing:
        del state[k]
    for i in range(5):
        state[f"extra{i}"] = torch.zeros(1)
    path = header_file(tmp_path / "k.safetensors", state, META)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert (f"5 missing keys {missing[:3]}, 5 unexpected keys ['extra0', 'extra1', 'extra2']") in str(e.value)


def test_the_first_wrongly_shaped_tensor_is_named(cnn, tmp_path):
    state = {k: v.contiguous() for k, v in cnn.state_dict().items()}
    state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    state["fc2.weight"] = torch.zeros(1, 1)
    path = header_file(tmp_path / "s.safetensors", state, META)
    with pytest.raises(CheckpointError, match=r"2 tensors have the wrong shape, e\.g\. conv1\.0\.weight: \(1, 1, 1, 1\) vs"):
        load_model(path)


def test_unreadable_weights_name_the_file(cnn, tmp_path):
    path = tmp_path / "t.safetensors"
    save_model(cnn, path, META)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])  # the header survives, the last tensor does not
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    assert str(e.value).startswith(f"{path}: ") and "truncated" in str(e.value)


# ------------------------------------------------------------------------------------- a run's file names


def test_run_files_name_the_three_files_of_a_model(tmp_path):
    files = run_files(tmp_path, "resnet18")
    assert files.all() == (tmp_path / "resnet18.safetensors", tmp_path / "resnet18.eval.npz",
                           tmp_path / "resnet18.metrics.json")
    assert default_run_dir("cnn", "fast") == Path("runs") / "cnn-fast"


@pytest.mark.parametrize("name, stem", [("cnn.safetensors", "cnn"), ("my.run.safetensors", "my.run"),
                                        ("cnn.pt", "cnn"), ("cnn", "cnn")])
def test_the_files_beside_a_checkpoint_share_its_stem(tmp_path, name, stem):
    files = RunFiles.beside(tmp_path / "sub" / name)
    assert (files.folder, files.stem) == (tmp_path / "sub", stem)
    assert files.metrics == tmp_path / "sub" / f"{stem}.metrics.json"


def test_evaluations_in_a_folder_are_found_by_their_predictions(tmp_path):
    for name in ("resnet18.eval.npz", "cnn.eval.npz", "cnn.safetensors", "notes.txt", "a.b.eval.npz"):
        (tmp_path / name).write_bytes(b"")
    found = evaluations_in(tmp_path)
    assert [(f.folder, f.stem) for f in found] == [(tmp_path, "a.b"), (tmp_path, "cnn"), (tmp_path, "resnet18")]
    assert evaluations_in(tmp_path / "none") == []
