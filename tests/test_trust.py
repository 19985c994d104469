"""Calibration metrics, temperature scaling, the OOD detectors and sets, and `python -m cifar.trust`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cifar import calibration, ood, ood_sets
from cifar.checkpoints import RunFiles
from cifar.explain import count_hooks
from cifar.models import build_model, list_models


def calibrated_sample(n: int, rng: np.random.Generator, *, overconfident: float = 0.0):
    """Probabilities whose top class is right with exactly the stated confidence (then inflated)."""
    conf = rng.uniform(0.3, 1.0, n)
    labels = rng.integers(0, 10, n)
    right = rng.uniform(size=n) < conf
    pred = np.where(right, labels, (labels + rng.integers(1, 10, n)) % 10)
    shown = conf + overconfident * (1 - conf)  # said confidence, truth stays `conf`
    probs = np.full((n, 10), 0.0)
    probs[:] = ((1 - shown) / 9)[:, None]
    probs[np.arange(n), pred] = shown
    return labels, probs


def test_a_perfectly_calibrated_predictor_has_ece_near_zero():
    labels, probs = calibrated_sample(200_000, np.random.default_rng(0))
    assert calibration.expected_calibration_error(labels, probs) < 0.005
    assert calibration.expected_calibration_error(labels, probs, adaptive=True) < 0.005
    assert calibration.max_calibration_error(labels, probs) < 0.02


def test_an_overconfident_predictor_has_a_positive_ece_and_worse_nll_and_brier():
    rng = np.random.default_rng(1)
    labels, good = calibrated_sample(50_000, rng)
    _, bad = calibrated_sample(50_000, np.random.default_rng(1), overconfident=0.8)
    ece = calibration.expected_calibration_error(labels, bad)
    assert ece > 0.1
    assert calibration.max_calibration_error(labels, bad) >= ece
    assert calibration.negative_log_likelihood(labels, bad) > calibration.negative_log_likelihood(labels, good)
    assert calibration.brier_score(labels, bad) > calibration.brier_score(labels, good)


def test_metrics_by_hand_on_four_samples():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    # confidences .9 .8 .6 .7, correct T T F T; 2 equal-width bins (.5, 1]: all four in the upper bin
    bins = calibration.reliability_bins(labels, probs, n_bins=2)
    assert bins["count"].tolist() == [0, 4]
    assert calibration.expected_calibration_error(labels, probs, 2) == pytest.approx(abs(0.75 - 0.75))
    # adaptive, 2 bins: {.6, .7} acc 1/2 conf .65 ; {.8, .9} acc 1 conf .85
    assert calibration.expected_calibration_error(labels, probs, 2, adaptive=True) == pytest.approx(0.5 * 0.15 + 0.5 * 0.15)
    ada = calibration.reliability_bins(labels, probs, n_bins=2, adaptive=True)
    assert ada["count"].tolist() == [2, 2] and ada["bin_lower"].tolist() == [0.6, 0.8]
    assert calibration.negative_log_likelihood(labels, probs) == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])))
    assert calibration.brier_score(labels, probs) == pytest.approx(np.mean([0.02, 0.08, 0.72, 0.18]))


def test_per_class_calibration_rows():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    rows = calibration.per_class_calibration(labels, probs, ["a", "b"], n_bins=5)
    a, b = rows
    assert (a["predicted"], b["predicted"]) == (3, 1)
    assert a["confidence"] == pytest.approx((0.9 + 0.7 + 0.6) / 3) and a["accuracy"] == pytest.approx(2 / 3)
    assert b["accuracy"] == 1.0 and b["gap"] == pytest.approx(-0.2)


def test_scale_probs_matches_softmax_of_scaled_logits():
    z = np.random.default_rng(2).normal(0, 4, (50, 10))
    got = calibration.scale_probs(calibration.softmax(z), 2.5)
    np.testing.assert_allclose(got, calibration.softmax(z / 2.5), atol=1e-12)


def test_temperature_scaling_recovers_a_known_temperature_and_lowers_nll():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 2.0, (20_000, 10))
    p = calibration.softmax(true_logits)
    labels = (p.cumsum(1) > rng.uniform(size=(len(p), 1))).argmax(1)  # labels drawn from the true probabilities
    overconfident = true_logits * 2.5  # a model that is T = 2.5 too sharp
    fit = calibration.fit_temperature(overconfident, labels)
    assert fit["temperature"] == pytest.approx(2.5, rel=0.05)
    assert fit["nll_after"] < fit["nll_before"]
    assert fit["seconds"] < 5
    scaled = calibration.softmax(overconfident / fit["temperature"])
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()  # accuracy unchanged


def test_temperature_fit_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="logits"):
        calibration.fit_temperature(np.zeros((3, 10)), np.zeros(4, int))


def test_auroc_and_fpr_match_scikit_learn():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 1, 500).round(1), rng.normal(0, 1, 300).round(1)  # rounding makes ties
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    assert ood.auroc(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]))
    t = ood.threshold_at_tpr(a)
    assert np.mean(a >= t) >= 0.95 and np.mean(a > t) < 0.95
    fpr, tpr, _ = roc_curve(y, np.r_[a, b])
    assert ood.fpr_at_tpr(a, b) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=0.01)


def test_msp_and_energy_by_definition():
    z = np.array([[2.0, 0.0, 0.0], [100.0, 100.0, -5.0]])
    np.testing.assert_allclose(ood.msp(z), calibration.softmax(z).max(1))
    np.testing.assert_allclose(ood.energy(z), np.log(np.exp(z - 100).sum(1)) + 100)


def test_mahalanobis_separates_features_far_from_the_class_means(tmp_path):
    rng = np.random.default_rng(5)
    dim, n_classes = 64, 10
    centres = rng.normal(0, 3, (n_classes, dim))
    mix = rng.normal(0, 1, (dim, dim)) / np.sqrt(dim)  # a correlated, shared covariance
    labels = rng.integers(0, n_classes, 5000)
    train = centres[labels] + rng.normal(0, 1, (5000, dim)) @ mix
    stats = ood.fit_mahalanobis(train, labels, n_classes, layer="fc")
    test_y = rng.integers(0, n_classes, 1000)
    inside = centres[test_y] + rng.normal(0, 1, (1000, dim)) @ mix
    outside = rng.normal(0, 3, (1000, dim)) + 10.0 * rng.choice([-1, 1], (1000, dim)) * 0.3
    assert ood.auroc(stats.score(inside), stats.score(outside)) > 0.99
    # the whitened distance equals the textbook one
    cov = np.cov((train - stats.means[labels]).T, bias=True)
    f = inside[:3]
    d = np.array([[(x - m) @ np.linalg.inv(cov) @ (x - m) for m in stats.means.astype(np.float64)] for x in f])
    np.testing.assert_allclose(stats.distances(f), d, rtol=2e-3)
    # saved as the lower triangle and read back to the same scores
    ood.save_stats(stats, tmp_path / "s.npz")
    again = ood.load_stats(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.whiten, stats.whiten)
    assert again.layer == "fc" and again.n_train == 5000


def test_the_combined_detector_keeps_95_percent_of_the_test_images_whichever_detector_flags():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)  # two independent detectors
    qs = {"a": ood.quantiles(a), "b": ood.quantiles(b)}
    both = ood.combined({"a": a, "b": b}, qs)
    t = ood.threshold_at_tpr(both)
    assert np.mean(both >= t) == pytest.approx(0.95, abs=0.002)
    assert 0.02 < t < 0.03  # each detector's own cut tightens to about 2.5% when two share the 5%
    assert np.mean((a < ood.threshold_at_tpr(a)) | (b < ood.threshold_at_tpr(b))) > 0.09  # "either flags": ~10%
    np.testing.assert_allclose(ood.percentile(np.array([-99.0, 99.0]), qs["a"]), [0.0, 1.0])


def test_load_stats_refuses_another_npz(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not Mahalanobis"):
        ood.load_stats(tmp_path / "x.npz")


@pytest.mark.parametrize("name", list_models())
def test_features_come_from_the_registered_layer_and_hooks_are_removed(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, feats = ood.logits_and_features(model, x, batch_size=2)
    assert logits.shape == (3, 10) and feats.shape == (3, {"cnn": 1024, "resnet18": 512}[name])
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert count_hooks(model) == 0


def test_ood_sets_are_seeded_and_shaped():
    cifar = np.random.default_rng(6).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    a = ood_sets.make_sets(cifar, n=5, seed=1)
    b = ood_sets.make_sets(cifar, n=5, seed=1)
    assert list(a) == list(ood_sets.SETS)
    for k in a:
        assert a[k].shape == (5, 32, 32, 3) and a[k].dtype == np.uint8
        np.testing.assert_array_equal(a[k], b[k])
    assert (a["single_colour"] == a["single_colour"][:, :1, :1]).all()
    assert (a["tiny_1x1"] == a["tiny_1x1"][:, :1, :1]).all()  # one pixel upscaled is one colour
    # a shuffled image holds the same pixels as some CIFAR image
    shuffled = a["patch_shuffled_cifar"][0]
    assert any(np.array_equal(np.sort(shuffled.ravel()), np.sort(c.ravel())) for c in cifar)
    with pytest.raises(ValueError, match="unknown OOD sets"):
        ood_sets.make_sets(cifar, 2, names=("nope",))


def test_the_cli_writes_temperature_stats_and_table(reference_run, cifar_root, tmp_path, capsys):
    from cifar.trust import main

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    ckpt = run / "cnn.safetensors"
    metrics_before = (run / "cnn.metrics.json").read_bytes()
    assert main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--ood-per-set", "8", "--quiet",
                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]) == 0
    files = RunFiles.beside(ckpt)
    result = json.loads(files.trust.read_text())
    assert result["temperature"] > 0
    assert result["fit"]["n"] == 80  # the tiny run's validation split, read from its metadata
    assert set(result["ood"]["sets"]) == set(ood_sets.SETS)
    assert set(result["ood"]["thresholds"]) == {*ood.DETECTORS, ood.COMBINED.name}
    assert set(result["ood"]["quantiles"]) == set(ood.DETECTORS)
    for row in result["ood"]["sets"].values():
        for d in (*ood.DETECTORS, ood.COMBINED.name):
            assert 0 <= row[d]["auroc"] <= 1 and 0 <= row[d]["fpr95"] <= 1
    c = result["calibration"]["test"]
    assert c["before"]["accuracy"] == c["after"]["accuracy"]
    assert "python -m cifar.trust" in result["provenance"]["command"]
    assert result["provenance"]["data"]["test_md5"]
    stats = ood.load_stats(files.mahalanobis)
    assert stats.means.shape == (10, 1024) and stats.layer == "fc1"
    assert (run / "cnn.metrics.json").read_bytes() == metrics_before  # the evaluation stays as it was
    out = capsys.readouterr().out
    assert "uniform noise" in out and "wrote" in out
    assert main(["--checkpoint", str(ckpt), "--report"]) == 0
    report = capsys.readouterr().out
    assert f"| CustomCNN | {result['temperature']:.3f} |" in report and "| uniform noise |" in report
    # a rerun takes the training features from the cache
    assert main(["--checkpoint", str(ckpt), "--data-dir", str(cifar_root), "--ood-per-set", "8", "--quiet",
                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert json.loads(files.trust.read_text())["ood"]["mahalanobis"]["train_features_cached"] is True


def test_the_cli_names_a_missing_data_folder(reference_run, tmp_path, capsys):
    from cifar.trust import main

    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    assert main(["--checkpoint", str(run / "cnn.safetensors"), "--data-dir", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
