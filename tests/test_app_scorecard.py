"""The explanation pages (Check a map, Explanation scorecard) and the contrastive target, through AppTest
on the fixture checkpoints (devkit.app_fixture)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from cifar import explain
from cifar import scorecard as sc
from cifar.checkpoints import load_model
from tests.test_app import no_exception, open_page, texts


@pytest.fixture
def env(ckpt, tmp_path, monkeypatch):
    """A private copy of the fixture checkpoints (a test may add a scorecard), no dataset."""
    dst = shutil.copytree(ckpt, tmp_path / "checkpoints")
    monkeypatch.setenv("CIFAR_CHECKPOINTS", str(dst))
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data"))
    return dst


def test_check_page_leaves_the_cached_models_unchanged(env):
    from cifar_app import cache

    nets = {m: cache.load_model(m) for m in ("cnn", "resnet18")}  # the objects every page shares
    before = {m: {k: v.clone() for k, v in n.state_dict().items()} for m, n in nets.items()}
    at = open_page("explanation_check", ec_method="Saliency")
    no_exception(at)
    shown = texts(at)
    assert "Sanity check" in shown and "Deletion AUC" in shown
    for m, net in nets.items():
        assert cache.load_model(m) is net
        assert net in explain._COPIES, "the page did not explain the shared model"  # it did use this object
        for k, v in net.state_dict().items():
            assert torch.equal(v, before[m][k]), f"{m}.{k} changed"
        fresh, _ = load_model(env / f"{m}.safetensors")
        for k, v in fresh.state_dict().items():
            assert torch.equal(v, net.state_dict()[k].to(v.dtype)), f"{m}.{k} differs from the file"
        assert not net.training and explain.count_hooks(net) == 0


def test_check_page_reads_its_method_from_the_link(env):
    at = open_page("explanation_check")
    at.query_params["method"] = "sobel-edges"
    at.run()
    no_exception(at)
    assert at.selectbox(key="ec_method").value == "Sobel edges"
    assert "A reference map" in texts(at)


def test_scorecard_page_without_a_scorecard_names_the_command(env):
    at = open_page("scorecard")
    no_exception(at)
    assert "python -m cifar.scorecard" in "\n".join(c.value for c in at.code)


def test_scorecard_page_shows_table_charts_and_verdict(env):
    from devkit.fake_cifar import write_fake_cifar10

    data = write_fake_cifar10(env.parent / "data")  # the same synthetic set the fixture's models saw
    assert sc.main(["--checkpoints", str(env), "--data-dir", str(data), "--models", "cnn", "--images", "4",
                    "--steps", "4", "--infidelity-samples", "2", "--sensitivity-images", "2",
                    "--sensitivity-samples", "2", "--cascade-images", "1", "--batch", "4", "--quiet",
                    "--methods", "Saliency", "Guided Backprop", "Random", "Sobel edges",
                    "--work", str(env.parent / "work")]) == 0
    at = open_page("scorecard")
    no_exception(at)
    shown = texts(at)
    assert "The verdict" in shown and "Sobel edge map" in shown
    assert "does not cover ResNet18" in shown  # only the CustomCNN was scored here
    rows = at.dataframe[0].value
    assert list(rows["method"]) == ["Saliency", "Guided Backprop", "Random", "Sobel edges"]
    assert "python -m cifar.scorecard" in "\n".join(c.value for c in at.code)


def _first_error(folder, model: str = "cnn") -> tuple[int, int, int]:
    with np.load(folder / f"{model}.eval.npz") as z:
        preds, labels = z["preds"], z["labels"]
    i = int(np.flatnonzero(preds != labels)[0])
    return i, int(labels[i]), int(preds[i])


def test_contrast_on_the_attributions_page(env):
    from cifar_app import cache

    i, true, pred = _first_error(env)
    names = cache.classes()
    at = open_page("attributions", at_view="detail", at_method="Saliency", at_target="contrast", image=i)
    no_exception(at)
    assert f"Why **{names[pred]}**" in texts(at) and f"not **{names[true]}**" in texts(at)
    assert at.query_params["target"] == "contrast"
    assert at.query_params["why"] == "predicted" and at.query_params["not"] == "true"
    # B = A for a model that predicts the true class: said, not drawn
    at = open_page("attributions", at_target="contrast", at_why=names[true], at_not="true", image=i)
    no_exception(at)
    assert "has no answer" in texts(at)


def test_gallery_links_to_why_predicted_not_true(env):
    i, true, pred = _first_error(env)
    at = open_page("misclassifications", true=true, pred=pred)
    button = next(b for b in at.button if b.key and b.key.startswith("mis_cnn_w"))
    index = int(button.key.rsplit("_w", 1)[1])
    button.click().run()
    no_exception(at)
    assert at.title[0].value == "Attributions"
    assert at.number_input(key="image").value == index
    assert at.radio(key="at_target").value == "contrast"
    assert at.query_params["target"] == "contrast" and at.query_params["not"] == "true"
