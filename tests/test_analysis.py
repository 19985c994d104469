"""cifar.analysis, cifar.reference and cifar.app_data: the pure functions and loaders behind the pages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar import CLASSES, SHORT_CLASSES, analysis, app_data, reference
from cifar.metrics import confusion, summarize


# ------------------------------------------------------------------------------ predictions

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDS_A = np.array([1, 1, 0, 1, 0, 2, 1, 2])
PROBS_A = np.array([[.2, .7, .1], [.1, .8, .1], [.6, .3, .1], [.1, .8, .1],
                    [.5, .4, .1], [.1, .1, .8], [.3, .4, .3], [.1, .2, .7]])
PREDS_B = np.array([0, 1, 0, 1, 1, 2, 2, 0])


def test_pair_indices_are_the_cell_sorted_by_confidence():
    assert analysis.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1).tolist() == [1, 0]  # p(car) .8 then .7
    assert analysis.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1, descending=False).tolist() == [0, 1]
    cm = confusion(LABELS, PREDS_A, 3)
    for t in range(3):
        for p in range(3):
            assert len(analysis.pair_indices(LABELS, PREDS_A, PROBS_A, t, p)) == cm[t, p]


def test_pair_indices_drop_unavailable_images():
    available = np.ones(len(LABELS), dtype=bool)
    available[1] = False
    assert analysis.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1, available=available).tolist() == [0]


def test_right_by_one_and_filter_by_other():
    mask = analysis.right_by_one(LABELS, PREDS_B, PREDS_A)
    assert np.flatnonzero(mask).tolist() == [0, 4, 6]
    cell = analysis.pair_indices(LABELS, PREDS_A, PROBS_A, 0, 1)  # [1, 0]
    assert analysis.filter_by_other(cell, LABELS, PREDS_B, right=True).tolist() == [0]
    assert analysis.filter_by_other(cell, LABELS, PREDS_B, right=False).tolist() == [1]


def test_disagreement_counts_partition_each_class():
    d = analysis.disagreement_counts(LABELS, PREDS_A, PREDS_B, 3)
    total = d["only_a"] + d["only_b"] + d["both"] + d["neither"]
    assert total.tolist() == np.bincount(LABELS).tolist()
    assert d["only_b"].tolist() == [1, 1, 1]
    assert d["only_a"].tolist() == [0, 0, 1]


def test_top_k_and_caption():
    cls, p = analysis.top_k(PROBS_A[:2], 2)
    assert cls.tolist() == [[1, 0], [1, 0]] and p[0].tolist() == [.7, .2]
    probs = np.zeros(10)
    probs[[3, 5, 4]] = [.61, .22, .09]
    assert analysis.top_k_caption(probs) == "cat 61% · dog 22% · deer 9%"


def test_labels_agree():
    assert analysis.labels_agree(LABELS, LABELS[[1, 5]], np.array([1, 5]))
    assert not analysis.labels_agree(LABELS, np.array([2, 2]), np.array([1, 5]))
    assert not analysis.labels_agree(LABELS, np.array([0]), np.array([100]))


# ------------------------------------------------------------------------------ confusion


def test_confusion_records_and_rates():
    cm = np.array([[3, 1], [0, 0]])
    recs = analysis.confusion_records(cm, ["a", "b"])
    assert len(recs) == 4
    assert recs[1] == {"true": "a", "pred": "b", "true_idx": 0, "pred_idx": 1, "count": 1, "rate": 0.25, "correct": False}
    assert recs[2]["rate"] == 0.0  # an empty row stays 0, not NaN


def test_confused_pairs_rank_and_share():
    cm = np.diag([90] * 10)
    cm[3, 5], cm[5, 3], cm[0, 8] = 12, 7, 12
    pairs = analysis.confused_pairs(cm, 3)
    assert [p["pair"] for p in pairs] == ["plane → ship", "cat → dog", "dog → cat"]
    assert pairs[0]["share_of_true"] == pytest.approx(12 / 102)
    assert [p["rank"] for p in pairs] == [1, 2, 3]


@pytest.mark.parametrize("points, cell", [
    ([{"true_idx": 3, "pred_idx": 5}], (3, 5)),
    ([{"true_idx": "3", "pred_idx": 5.0}], (3, 5)),
    ([], None), (None, None),
    ([{"true": "cat"}], None),
    ([{"true_idx": 12, "pred_idx": 0}], None),
])
def test_selected_cell(points, cell):
    assert analysis.selected_cell(points) == cell


# ------------------------------------------------------------------------------ tables


def summary_of(seed: int = 0, n: int = 200) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return json.loads(json.dumps(summarize(labels, probs, list(CLASSES))))  # as read back from the JSON


def test_prf_records_use_short_names():
    s = summary_of()
    recs = analysis.prf_records(s["classification"])
    assert [r["class"] for r in recs] == list(SHORT_CLASSES)
    assert recs[1]["recall"] == pytest.approx(s["per_class_accuracy"]["automobile"])
    assert len(analysis.prf_long(s["classification"])) == 30


def test_accuracy_and_per_class_rows_put_ours_beside_the_report():
    s = summary_of()
    meta = {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.0}
    ours = {"cnn": {"meta": meta, "summary": s}, "resnet18": None}
    refs = {m: {"accuracy": reference.ACCURACY[m], "macro": reference.MACRO[m]} for m in ("cnn", "resnet18")}
    rows = {r["metric"]: r for r in analysis.accuracy_rows(ours, refs)}
    assert rows["test accuracy"]["cnn · ours"] == pytest.approx(s["accuracy"])  # the evaluation wins over meta
    assert rows["train accuracy"]["cnn · ours"] == 0.9
    assert rows["macro F1"]["cnn · ours"] == pytest.approx(s["classification"]["macro"]["f1"])
    assert rows["test accuracy"]["resnet18 · ours"] is None
    assert rows["test accuracy"]["resnet18 · report"] == 0.9464
    per = analysis.per_class_rows(ours, reference.PER_CLASS_ACCURACY)
    assert [r["class"] for r in per] == list(SHORT_CLASSES)
    assert per[3]["cnn · ours"] == pytest.approx(s["per_class_accuracy"]["cat"])
    assert per[3]["cnn · report"] == 0.732 and per[3]["resnet18 · report"] == 0.879
    # Flip TTA gets a row only once an evaluation measured it, and the report has no such number.
    tta = "test accuracy, flip TTA (2 passes)"
    assert tta not in rows
    ours["cnn"]["summary"] = {**s, "flip_tta_accuracy": 0.875}
    rows = {r["metric"]: r for r in analysis.accuracy_rows(ours, refs)}
    assert rows[tta]["cnn · ours"] == 0.875 and rows[tta]["cnn · report"] is None
    assert rows[tta]["resnet18 · ours"] is None
    assert list(rows).index(tta) == list(rows).index("test accuracy") + 1


def test_model_rows():
    meta = {"parameters": 4577290, "recipe": "paper", "epochs_run": 30, "best_epoch": 27, "wall_time_s": 3725.0,
            "hardware": "AMD EPYC, 2 threads; fp32", "data": {"n_train": 45000, "n_val": 5000, "n_test": 10000},
            "config": {"optimizer": "adam", "lr": 0.001, "batch_size": 32, "scheduler": "plateau", "plateau_factor": 0.1,
                       "plateau_patience": 3, "dropout": 0.4, "epochs": 30, "early_stopping": 15}}
    rows = {r[""]: r for r in analysis.model_rows({"cnn": {"meta": meta}, "resnet18": None}, {"cnn": 5}, reference.OVERVIEW)}
    assert rows["parameters"]["cnn · ours"] == "4,577,290"
    assert rows["depth"]["cnn · ours"].startswith("5 weight layers")
    assert rows["epochs"]["cnn · ours"] == "30 of 30, best epoch 27"
    assert rows["wall time"]["cnn · ours"] == "1 h 02 min"
    assert "Adam" in rows["recipe"]["cnn · ours"] and "ReduceLROnPlateau" in rows["recipe"]["cnn · ours"]
    assert rows["epochs"]["resnet18 · report"] == "75, best epoch 75"
    assert rows["wall time"]["cnn · report"] == "not stated"
    assert rows["parameters"]["resnet18 · ours"] == "—"


def test_weight_layers_counts_the_main_path():
    from cifar.models import build_model

    for name, depth in (("cnn", 5), ("resnet18", 18)):
        shapes = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
        assert analysis.weight_layers(shapes) == depth


def test_recipe_text_and_durations():
    from cifar.config import make_config

    text = analysis.recipe_text(make_config("resnet18", "fast").to_dict())
    assert text.startswith("SGD (momentum 0.9, Nesterov, wd 0.0005), lr 0.2, batch 256, OneCycleLR")
    assert "label smoothing 0.1" in text and "EMA 0.999" in text and "resizing" not in text
    cpu = analysis.recipe_text(make_config("resnet18", "cpu").to_dict())
    assert cpu.endswith("8 epochs, progressive resizing 16:5,24:2 (size:epochs, then 32px)")
    assert analysis.format_duration(48.4) == "48 s"
    assert analysis.format_duration(725) == "12 min 05 s"
    assert analysis.format_duration(None) == "—"


# ------------------------------------------------------------------------------ history and tuning


HISTORY = [dict(epoch=e, train_loss=2.0 / e, train_acc=0.3 * e, val_loss=2.1 / e, val_acc=0.28 * e, lr=0.1 / e,
                seconds=3.0) for e in (1, 2, 3)]


def test_size_phases():
    sized = [dict(h, train_size=s) for h, s in zip(HISTORY + [dict(HISTORY[0], epoch=4)], (16, 16, 24, 32))]
    assert analysis.size_phases(sized) == [{"size": 16, "first": 1, "last": 2}, {"size": 24, "first": 3, "last": 3},
                                          {"size": 32, "first": 4, "last": 4}]
    assert analysis.size_phases_text(sized).startswith("Progressive resizing: epochs 1–2 on 16px, 3 on 24px, 4 on 32px images.")
    # Histories from before --train-sizes have no train_size: all 32px, nothing to say.
    assert analysis.size_phases(HISTORY) == [{"size": 32, "first": 1, "last": 3}]
    assert analysis.size_phases_text(HISTORY) == ""


def test_history_long_and_summary():
    rows = analysis.history_long(HISTORY)
    assert len(rows) == 12
    assert {"epoch": 2, "split": "val", "metric": "accuracy", "value": 0.56} in rows
    assert analysis.lr_records(HISTORY)[2] == {"epoch": 3, "lr": pytest.approx(0.1 / 3)}
    h = analysis.history_summary({"history": HISTORY, "best_epoch": 2, "epochs_run": 3})
    assert h["best_val_acc"] == 0.56 and h["gap"] == pytest.approx(0.6 - 0.56)


def test_history_long_skips_non_finite_values():
    rows = analysis.history_long([dict(epoch=1, train_loss=float("nan"), train_acc=0.1, val_loss=1.0, val_acc=0.1)])
    assert len(rows) == 3


def test_tune_grid_keeps_the_best_per_cell_and_counts_failures():
    rows = [
        {"lr": "0.001", "batch_size": "32", "best_val_acc": "0.80", "epochs_run": "5"},
        {"lr": "0.001", "batch_size": "32", "best_val_acc": "0.85", "epochs_run": "5"},  # another weight decay, same cell
        {"lr": "0.003", "batch_size": "64", "best_val_acc": "0.70", "epochs_run": "3"},
        {"lr": "0.1", "batch_size": "64", "best_val_acc": "", "epochs_run": ""},
    ]
    grid = analysis.tune_grid(rows)
    cells = {(c["lr"], c["batch_size"]): c for c in grid["cells"]}
    assert cells[(0.001, 32)]["best_val_acc"] == 0.85 and cells[(0.001, 32)]["trials"] == 2
    assert cells[(0.1, 64)]["best_val_acc"] is None and grid["n_failed"] == 1
    assert grid["best"]["lr"] == 0.001 and grid["n_trials"] == 4
    assert grid["epochs"] == [3, 5]  # the failed trial's empty count is left out


def test_tune_grid_epochs_come_from_the_config_cap_not_an_early_stop():
    config = json.dumps({"epochs": 30, "lr": 0.001})
    rows = [{"lr": "0.001", "batch_size": "32", "best_val_acc": "0.8", "epochs_run": "22", "config": config},
            {"lr": "0.003", "batch_size": "32", "best_val_acc": "0.7", "epochs_run": "nan", "config": "{}"}]
    assert analysis.tune_grid(rows)["epochs"] == [30]  # the nan row (hand-edited) is skipped, not an error
    assert analysis.tune_epochs_note([30], 30) == " within 30 epochs per trial."
    assert "a cap well short of the report's 30" in analysis.tune_epochs_note([5], 30)
    assert analysis.tune_epochs_note([], 30) == "."


def test_tune_grid_names_missing_columns():
    with pytest.raises(ValueError, match="best_val_acc"):
        analysis.tune_grid([{"lr": "0.1", "batch_size": "32"}])


# ------------------------------------------------------------------------------ attributions


def test_method_params_keep_only_what_the_method_reads():
    every = dict(steps=50, n_samples=20, stdev=0.15, window=8, stride=4, layer="layer3", baseline="black")
    assert analysis.method_params("Integrated Gradients", **every) == {"steps": 50, "baseline": "black"}
    assert analysis.method_params("Saliency", **every) == {}
    assert analysis.method_params("Grad-CAM", **every) == {"layer": "layer3"}
    assert analysis.method_params("Occlusion", **every) == {"window": 8, "stride": 4, "baseline": "black"}
    with pytest.raises(ValueError):
        analysis.method_params("LIME")


def test_method_params_cover_explain_methods():
    from cifar import explain

    assert tuple(analysis.METHOD_PARAMS) == explain.METHODS


def test_attribution_target():
    probs = np.array([0.1, 0.7, 0.2])
    assert analysis.attribution_target("predicted", probs, 2, None) == 1
    assert analysis.attribution_target("true", probs, 2, None) == 2
    assert analysis.attribution_target("true", probs, None, None) is None
    assert analysis.attribution_target("class", probs, 2, 0) == 0


# ------------------------------------------------------------------------------ pixels


def test_colormap_ends_and_shape():
    out = analysis.colormap(np.array([[0.0, 1.0], [np.nan, 2.0]]))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [68, 1, 84] and out[0, 1].tolist() == [253, 231, 37]
    assert out[1, 0].tolist() == [68, 1, 84] and out[1, 1].tolist() == [253, 231, 37]


def test_upscale_nearest_repeats_pixels():
    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = analysis.upscale_nearest(img, 3)
    assert big.shape == (6, 6, 3)
    assert (big[:3, :3] == img[0, 0]).all() and (big[3:, 3:] == img[1, 1]).all()


def test_channel_tiles_scale_each_channel():
    maps = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4), np.full((4, 4), 5.0, np.float32)])
    tiles = analysis.channel_tiles(maps, scale=2)
    assert len(tiles) == 2 and tiles[0].shape == (8, 8, 3)
    assert tiles[0][0, 0].tolist() == [68, 1, 84] and tiles[0][-1, -1].tolist() == [253, 231, 37]
    assert (tiles[1] == [68, 1, 84]).all()  # a flat channel


def test_overlay_leaves_zero_attribution_untouched():
    img = np.full((4, 4, 3), 100, np.uint8)
    shown = np.zeros((4, 4), np.float32)
    shown[0, 0] = 1.0
    out = analysis.overlay(img, shown, opacity=1.0, mode="signed", scale=1)
    assert (out[1:, 1:] == 100).all()
    assert out[0, 0].tolist() == [180, 4, 38]  # full positive = coolwarm's red end
    half = analysis.overlay(img, shown, opacity=0.5, mode="signed", scale=1)
    assert half[0, 0].tolist() == [140, 52, 69]
    assert analysis.overlay(img, shown, 0.0, "absolute", scale=2).shape == (8, 8, 3)
    with pytest.raises(ValueError):
        analysis.overlay(img, shown[:2], 1.0)


# ------------------------------------------------------------------------------ app_data


def test_out_dir_of():
    assert analysis.out_dir_of("python -m cifar.train --model cnn --out-dir /x/y", "cnn", "paper") == "/x/y"
    assert analysis.out_dir_of("python -m cifar.train --out-dir=z", "cnn", "paper") == "z"
    assert analysis.out_dir_of("python -m cifar.train --model cnn", "cnn", "paper") == "runs/cnn-paper"


def test_rebuild_command_for_a_missing_checkpoint(tmp_path):
    paths = app_data.Paths(tmp_path / "ckpt", tmp_path / "nodata")
    with pytest.raises(app_data.Unavailable) as e:
        app_data.read_meta("resnet18", paths)
    assert "resnet18.safetensors" in e.value.message and "is missing" in e.value.message
    lines = e.value.command.splitlines()
    assert lines[0] == f"python -m cifar.train --model resnet18 --recipe paper --data-dir {tmp_path / 'nodata'} --download"
    assert lines[1] == (f"cp runs/resnet18-paper/resnet18.safetensors runs/resnet18-paper/resnet18.eval.npz "
                        f"runs/resnet18-paper/resnet18.metrics.json {tmp_path / 'ckpt'}/")
    assert lines[2].startswith("python -m cifar.bundle")


def test_rebuild_command_reuses_the_checkpoints_own_command_on_this_machine(tmp_path):
    paths = app_data.Paths(tmp_path / "ckpt", tmp_path / "nodata")
    meta = {"command": "python -m cifar.train --model cnn --recipe fast --epochs 60 --data-dir ../shared/cifar10 "
                       "--out-dir /root/runs/cnn --resume", "recipe": "fast"}
    train, copy, *_ = app_data.rebuild_command("cnn", paths, meta).splitlines()
    # the recipe and its overrides stay; the other machine's folders and --resume go
    assert train == f"python -m cifar.train --model cnn --recipe fast --epochs 60 --data-dir {tmp_path / 'nodata'} --download"
    assert copy.startswith("cp runs/cnn-fast/cnn.safetensors ")


def test_portable_command_drops_both_flag_forms():
    got = analysis.portable_command("python -m cifar.train --out-dir=/a --data-dir=/b --quiet --lr 0.01", "--data-dir d")
    assert got == "python -m cifar.train --lr 0.01 --data-dir d"


def test_corrupt_files_become_unavailable(tmp_path):
    paths = app_data.Paths(tmp_path, tmp_path / "nodata")
    (tmp_path / "cnn.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(app_data.Unavailable, match="cannot be read"):
        app_data.read_meta("cnn", paths)
    with pytest.raises(app_data.Unavailable) as e:
        app_data.load_eval("cnn", paths)
    assert e.value.command.startswith("python -m cifar.evaluate --checkpoint")
    (tmp_path / "cnn.eval.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(app_data.Unavailable, match="cannot be read"):
        app_data.load_eval("cnn", paths)
    with pytest.raises(app_data.Unavailable, match="demo bundle"):
        app_data.load_test_images(paths)


def test_summary_is_recomputed_without_the_json(tmp_path):
    paths = app_data.Paths(tmp_path, tmp_path)
    rng = np.random.default_rng(0)
    labels = np.arange(50) % 10
    probs = rng.dirichlet(np.ones(10), 50)
    np.savez(tmp_path / "cnn.eval.npz", probs=probs, preds=probs.argmax(1), labels=labels, logits=np.log(probs))
    s = app_data.load_summary("cnn", paths)
    assert s["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())


def test_summary_without_json_or_sklearn_says_how_to_rebuild(tmp_path, monkeypatch):
    # The hosted demo (Pipfile) has no scikit-learn: a missing .metrics.json must be a message, not a crash.
    paths = app_data.Paths(tmp_path, tmp_path)
    probs = np.full((10, 10), 0.1)
    np.savez(tmp_path / "cnn.eval.npz", probs=probs, preds=probs.argmax(1), labels=np.arange(10))
    monkeypatch.setitem(sys.modules, "cifar.metrics", None)  # makes `import cifar.metrics` raise ImportError
    with pytest.raises(app_data.Unavailable, match="needs scikit-learn") as e:
        app_data.load_summary("cnn", paths)
    assert e.value.command.startswith("python -m cifar.evaluate --checkpoint")
    assert e.value.command.endswith(" --flip-tta")  # so the rebuilt metrics fill the overview's TTA row


def test_test_images_read_only_the_test_batch(cifar_root, tmp_path):
    paths = app_data.Paths(tmp_path, cifar_root)
    imgs = app_data.load_test_images(paths)
    assert imgs.full and len(imgs.indices) == 100 and imgs.images.shape == (100, 32, 32, 3)


def test_app_paths_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("CIFAR10_DIR", "/somewhere")
    p = app_data.app_paths()
    assert p.checkpoints == tmp_path and p.data == Path("/somewhere")
    monkeypatch.delenv("CIFAR_CHECKPOINTS")
    assert app_data.app_paths().checkpoints == Path("checkpoints")


def test_reference_tables_cover_every_class():
    assert tuple(reference.CNN_PER_CLASS) == SHORT_CLASSES
    for per in reference.PER_CLASS_ACCURACY.values():
        assert tuple(per) == SHORT_CLASSES
    # The CNN's per-class accuracy is its recall column.
    assert all(reference.PER_CLASS_ACCURACY["cnn"][c] == reference.CNN_PER_CLASS[c][1] for c in SHORT_CLASSES)


def test_file_key_changes_when_a_file_is_replaced(tmp_path):
    f = tmp_path / "a"
    assert app_data.file_key(f) is None
    f.write_bytes(b"1")
    k = app_data.file_key(f)
    f.write_bytes(b"22")
    os.utime(f, ns=(k[0] + 10**9, k[0] + 10**9))
    assert app_data.file_key(f) != k


def test_confused_pairs_match_cifar_metrics():
    from cifar.metrics import most_confused_pairs

    cm = np.random.default_rng(1).integers(0, 5, (10, 10))
    ours = analysis.confused_pairs(cm, 15)
    ref = most_confused_pairs(cm, 15)
    assert [(p["true_idx"], p["pred_idx"], p["count"]) for p in ours] == [(p["true"], p["pred"], p["count"]) for p in ref]


def test_release_memory_runs():
    assert app_data.release_memory() in (True, False)


def test_loaded_models_are_channels_last(tmp_path):
    import torch

    from cifar.checkpoints import save_model
    from cifar.models import build_model

    net = build_model("cnn")
    save_model(net, tmp_path / "cnn.safetensors", {"model": "cnn", "builder_kwargs": {}})
    loaded, _ = app_data.load_checkpoint("cnn", app_data.Paths(tmp_path, tmp_path))
    assert loaded.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not loaded.training
