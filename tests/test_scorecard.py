"""Sanity checks, faithfulness scores, the contrastive target and the scorecard CLI (cifar.scorecard).

Tiny models and synthetic data: a linear model whose class-0 logit reads only a known 8×8 patch, a
seeded CustomCNN, and the app fixture's two checkpoints for the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cifar import explain
from cifar import scorecard as S
from cifar.models import build_model

PATCH = (slice(8, 16), slice(12, 20))  # the only pixels the patch model looks at


class PatchModel(nn.Module):
    """Class 0's logit = 6 × the mean of a known 8×8 patch (all channels); the other logits are 0."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)
        w = torch.zeros(10, 3, 32, 32)
        w[0, :, PATCH[0], PATCH[1]] = 6.0 / (3 * 64)
        with torch.no_grad():
            self.fc.weight.copy_(w.view(10, -1))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


def _patch_images(n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.4 - 0.9  # dark background
    x[:, :, PATCH[0], PATCH[1]] = 1.0  # the white patch the model reads
    return x


def _oracle(n: int) -> np.ndarray:
    m = np.zeros((n, 32, 32), np.float32)
    m[:, PATCH[0], PATCH[1]] = 1.0
    return m


def test_an_oracle_beats_random_and_an_inverted_oracle_loses():
    model, x = PatchModel().eval(), _patch_images()
    targets = [0] * len(x)
    maps = {"oracle": _oracle(len(x)), "random": explain.reference_maps("Random", x, seed=1),
            "inverted": -_oracle(len(x))}
    aucs = {}
    for name, m in maps.items():
        c = S.curves(model, x, m, targets, steps=16)
        assert c["deletion"].shape == c["insertion"].shape == (len(x), 17)
        # the start and the end of both curves do not depend on the order
        np.testing.assert_allclose(c["deletion"][:, 0], c["insertion"][:, -1], rtol=1e-5)
        aucs[name] = (S.auc(c["deletion"]).mean(), S.auc(c["insertion"]).mean())
    assert aucs["oracle"][0] < aucs["random"][0] < aucs["inverted"][0]  # deletion: lower is better
    assert aucs["oracle"][1] > aucs["random"][1] > aucs["inverted"][1]  # insertion: higher is better


def test_auc_is_the_trapezoid_over_a_normalised_axis():
    assert S.auc(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert S.auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert S.auc(np.array([0.0, 1.0, 0.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_similarity_scores():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32, 32))
    assert S.spearman(a, a) == pytest.approx(1.0)
    assert S.spearman(a, -a) == pytest.approx(-1.0)
    assert S.spearman(a, np.exp(a)) == pytest.approx(1.0)  # ranks only
    assert S.spearman(a, np.zeros_like(a)) == 0.0  # a constant map has no order
    assert abs(S.spearman(a, rng.normal(size=(32, 32)))) < 0.15
    np.testing.assert_array_equal(S.rankdata(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    assert S.ssim(a, a) == pytest.approx(1.0)
    assert S.ssim(a, rng.normal(size=(32, 32))) < 0.5


def _trained_looking(name: str) -> nn.Module:
    """A registered model whose BatchNorm weights and statistics are not the reset values either."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_cascade_reinitialises_exactly_the_blocks_it_names_in_order(name):
    model = _trained_looking(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = explain.count_hooks(model)
    steps = []
    for step in S.cascade(model, seed=3):
        state = step.model.state_dict()
        changed = {k.rsplit(".", 1)[0] for k, v in state.items()
                   if v.is_floating_point() and not torch.equal(v, before[k])}
        owners = {k.rsplit(".", 1)[0] for k in state}
        claimed = {o for o in owners if any(o == r or o.startswith(r + ".") for r in step.randomised)}
        assert changed == claimed, f"{step.label}: changed {sorted(changed ^ claimed)} unexpectedly"
        steps.append((step.label, step.randomised))
    blocks = S.BLOCKS[name]
    assert [label for label, _ in steps] == [S.ORIGINAL, *(label for label, _ in blocks)]
    cumulative = ()
    for (_, randomised), (_, names) in zip(steps[1:], blocks):
        cumulative = (*cumulative, *names)
        assert randomised == cumulative
    # the model passed in is untouched: same weights, eval mode, no hooks
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.training and explain.count_hooks(model) == hooks


def test_cascade_is_seeded():
    model = _trained_looking("cnn")
    a = [s.model.fc2.weight.clone() for s in S.cascade(model, seed=1)][-1]
    b = [s.model.fc2.weight.clone() for s in S.cascade(model, seed=1)][-1]
    c = [s.model.fc2.weight.clone() for s in S.cascade(model, seed=2)][-1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sanity_cascade_scores_start_at_one_and_the_references_behave():
    model = _trained_looking("cnn")
    x = torch.randn(2, 3, 32, 32)
    run = S.sanity_cascade(model, x, [1, 2], ["Saliency", "Sobel edges", "Random"], seed=0)
    n_steps = len(S.BLOCKS["cnn"]) + 1
    assert run["steps"][0] == S.ORIGINAL and len(run["steps"]) == n_steps
    for method, scores in run["scores"].items():
        assert run["maps"][method].shape == (n_steps, 2, 32, 32)
        for k in ("spearman_abs", "spearman", "ssim"):
            assert scores[k].shape == (n_steps, 2)
            np.testing.assert_allclose(scores[k][0], 1.0, atol=1e-9)  # step 0 is the original map itself
    np.testing.assert_allclose(run["scores"]["Sobel edges"]["spearman_abs"], 1.0, atol=1e-9)  # model-blind
    assert np.abs(run["scores"]["Random"]["spearman_abs"][1:]).max() < 0.2  # a fresh draw per step
    assert run["scores"]["Saliency"]["spearman_abs"][-1].mean() < 0.9  # the gradient follows the weights


def test_contrastive_integrated_gradients_is_complete():
    model = _trained_looking("cnn")
    x = torch.randn(1, 3, 32, 32) * 0.5
    a, b = 3, 5
    attr = explain.attribute(model, x, a, "Integrated Gradients", steps=128, baseline="zero", contrast=b)
    with torch.no_grad():
        z, z0 = model(x)[0], model(torch.zeros_like(x))[0]
    expected = float((z[a] - z[b]) - (z0[a] - z0[b]))
    assert float(attr.sum()) == pytest.approx(expected, rel=2e-2, abs=2e-3)


@pytest.mark.parametrize("method", ["Saliency", "Occlusion"])
def test_contrast_is_the_difference_of_the_two_maps_for_linear_methods(method):
    model = _trained_looking("cnn")
    x = torch.randn(1, 3, 32, 32)
    both = explain.attribute(model, x, 3, method, contrast=5)
    np.testing.assert_allclose(both, explain.attribute(model, x, 3, method) - explain.attribute(model, x, 5, method),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", list(explain.METHODS))
def test_every_method_takes_a_contrast_and_leaves_no_hooks(method):
    model = _trained_looking("cnn")
    x = torch.randn(1, 3, 32, 32)
    fast = {"steps": 8, "n_samples": 4}
    m = explain.attribute(model, x, 3, method, contrast=5, **fast)
    assert m.shape == (32, 32) and np.isfinite(m).all()
    assert not np.allclose(m, explain.attribute(model, x, 3, method, **fast))
    assert explain.count_hooks(model) == 0
    with pytest.raises(ValueError, match="another class"):
        explain.attribute(model, x, 3, method, contrast=3)


def test_batched_attribution_matches_one_at_a_time():
    model = _trained_looking("cnn")
    x = torch.randn(3, 3, 32, 32)
    batch = explain.attribute_batch(model, x, [1, 4, 7], "Integrated Gradients", steps=8)
    for i, t in enumerate([1, 4, 7]):
        np.testing.assert_allclose(batch[i], explain.attribute(model, x[i:i + 1], t, "Integrated Gradients", steps=8),
                                   atol=1e-5, rtol=1e-4)


def test_captum_metrics_rank_an_oracle_first():
    model, x = PatchModel().eval(), _patch_images(2)
    good = S.infidelity(model, x, _oracle(2), [0, 0])
    bad = S.infidelity(model, x, -_oracle(2) + 0.5, [0, 0])
    assert (good < bad).all()
    sens = S.max_sensitivity(PatchModel().eval(), x, [0, 0], "Saliency", n_samples=3)
    np.testing.assert_allclose(sens, 0.0, atol=1e-6)  # a linear model's gradient never changes


def test_sample_is_half_errors_seeded_and_interleaved():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    preds = np.where(rng.random(500) < 0.3, (labels + 1) % 10, labels)
    idx = S.choose_sample(labels, preds, 20, seed=4)
    assert len(set(idx.tolist())) == 20
    wrong = preds[idx] != labels[idx]
    assert wrong.sum() == 10 and wrong[::2].all() and not wrong[1::2].any()
    np.testing.assert_array_equal(idx, S.choose_sample(labels, preds, 20, seed=4))
    assert not np.array_equal(idx, S.choose_sample(labels, preds, 20, seed=5))
    with pytest.raises(ValueError, match="needs more images"):
        S.choose_sample(labels[:3], labels[:3], 20, seed=0)


SMALL = ["--images", "4", "--steps", "4", "--infidelity-samples", "2", "--sensitivity-images", "2",
         "--sensitivity-samples", "2", "--cascade-images", "2", "--batch", "2", "--quiet"]


def test_scorecard_cli_schema_resume_and_reproducibility(tmp_path, tmp_path_factory, monkeypatch):
    from devkit.app_fixture import app_checkpoints_once

    ckpt = app_checkpoints_once(tmp_path_factory)
    data = ckpt.parent / "data"
    methods = ["Saliency", "Grad-CAM", "Sobel edges", "Random"]
    argv = ["--checkpoints", str(ckpt), "--data-dir", str(data), "--methods", *methods, *SMALL, "--models", "cnn"]
    out1, out2 = tmp_path / "a.json", tmp_path / "b.json"
    assert S.main([*argv, "--out", str(out1), "--work", str(tmp_path / "w1")]) == 0
    card = json.loads(out1.read_text())
    assert card["format"] == S.FORMAT and card["command"].startswith("python -m cifar.scorecard")
    assert {"name", "test_md5"} <= set(card["data"]) and card["hardware"]["cpus"]
    assert card["settings"]["images"] == 4
    for model, entry in card["models"].items():
        assert entry["sample"]["errors"] == 2 and len(entry["sample"]["indices"]) == 4
        assert list(entry["methods"]) == methods
        for method, m in entry["methods"].items():
            assert len(m["deletion_auc"]) == len(m["insertion_auc"]) == len(m["infidelity"]) == 4
            assert len(m["deletion_curve"]) == 5
            assert len(m["sensitivity"]) == (0 if method == "Random" else 2)
            assert len(m["sanity"]["spearman_abs"]) == len(entry["blocks"]) + 1 == len(m["sanity_steps"])
        rows = S.summary_rows(card, model)
        assert [r["method"] for r in rows] == methods
        assert all(0.0 <= r["deletion_auc"] <= 1.0 for r in rows)
    assert any("Sobel" in line for line in S.verdict(card))

    # a second run in a fresh work folder gives the same numbers; a rerun in the first one resumes
    assert S.main([*argv, "--out", str(out2), "--work", str(tmp_path / "w1")]) == 0
    assert json.loads(out2.read_text())["models"] == card["models"]
    assert S.main([*argv, "--out", str(out2), "--work", str(tmp_path / "w2")]) == 0
    fresh = json.loads(out2.read_text())["models"]
    for model in card["models"]:
        for method in methods:
            a, b = card["models"][model]["methods"][method], fresh[model]["methods"][method]
            assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def _entry(deletion: float, insertion: float, sanity: list[float]) -> dict:
    return {"deletion_auc": [deletion] * 3, "insertion_auc": [insertion] * 3, "infidelity": [1.0] * 3,
            "sensitivity": [0.1], "sanity": {"spearman_abs": [[v, v] for v in sanity],
                                             "ssim": [[v, v] for v in sanity]},
            "sanity_steps": ["original", "fc", "conv"][:len(sanity)]}


def test_verdict_follows_the_numbers():
    card = {"models": {"cnn": {"methods": {
        "Guided Backprop": _entry(0.20, 0.60, [1.0, 0.9, 0.3]),  # mean over the cascade 0.6: fails
        "Saliency": _entry(0.10, 0.40, [1.0, 0.3, 0.1]),  # passes; beats Sobel on deletion only
        "Sobel edges": _entry(0.25, 0.50, [1.0, 1.0, 1.0]),
    }}}}
    rows = {r["method"]: r for r in S.summary_rows(card, "cnn")}
    assert rows["Guided Backprop"]["spearman_abs"] == pytest.approx(0.6)
    assert rows["Guided Backprop"]["spearman_abs_top"] == pytest.approx(0.9)
    assert rows["Guided Backprop"]["spearman_abs_all"] == pytest.approx(0.3)
    assert S.sanity_fails(rows["Guided Backprop"]) and not S.sanity_fails(rows["Saliency"])
    lines = S.verdict(card, {"cnn": "CustomCNN"})
    assert any(line.startswith("**CustomCNN**: Guided Backprop fails the sanity check") for line in lines)
    assert any("Saliency passes it" in line for line in lines)
    assert any("Guided Backprop beats the Sobel edge map on both" in line and "Saliency on only one" in line
               for line in lines)
