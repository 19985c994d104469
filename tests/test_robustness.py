"""The robustness sweep: its pure summaries, the stratified subset, and the CLI end to end (tiny, resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar import robustness as R


def test_stratified_subset_takes_the_same_number_per_class_and_is_seeded():
    labels = np.repeat(np.arange(10), 100)  # grouped by class, like the JPEG copy's test set
    a = R.stratified_subset(labels, 7, seed=3)
    assert np.array_equal(np.bincount(labels[a]), np.full(10, 7))
    assert np.array_equal(a, R.stratified_subset(labels, 7, seed=3))
    assert not np.array_equal(a, R.stratified_subset(labels, 7, seed=4))
    assert np.array_equal(R.stratified_subset(labels, 0, seed=3), np.arange(1000))
    assert len(np.unique(a)) == len(a) and np.all(np.diff(a) > 0)


def test_summary_follows_hendrycks_with_the_named_baseline():
    clean = {"base": 0.9, "m": 0.95}
    table = {"base": {"fog": [0.8, 0.7], "snow": [0.6, 0.5]},
             "m": {"fog": [0.9, 0.85], "snow": [0.75, 0.65]}}
    s = R.summarize(clean, table, baseline="base")
    assert s["m"]["mean_corruption_accuracy"] == pytest.approx(np.mean([0.9, 0.85, 0.75, 0.65]))
    assert s["m"]["mean_degradation"] == pytest.approx(np.mean([0.05, 0.10, 0.20, 0.30]))
    # CE_c = Σ_s E / Σ_s E_base; relative CE_c = Σ_s (E − E_clean) / Σ_s (E_base − E_base,clean)
    ce = np.mean([(0.1 + 0.15) / (0.2 + 0.3), (0.25 + 0.35) / (0.4 + 0.5)])
    rel = np.mean([(0.05 + 0.10) / (0.1 + 0.2), (0.20 + 0.30) / (0.3 + 0.4)])
    assert s["m"]["mce"] == pytest.approx(ce)
    assert s["m"]["relative_mce"] == pytest.approx(rel)
    assert s["base"]["mce"] == pytest.approx(1.0) and s["base"]["relative_mce"] == pytest.approx(1.0)
    assert R.summarize(clean, table)["m"]["mce"] is None  # no baseline named: no mCE


def test_the_cli_writes_a_small_file_and_resumes(reference_run, cifar_root, tmp_path, capsys):
    out = tmp_path / "robustness.json"
    argv = ["--data-dir", str(cifar_root), "--checkpoints", str(reference_run), "--per-class", "2",
            "--adv-per-class", "1", "--corruptions", "fog", "jpeg_compression", "--severities", "1", "5",
            "--epsilons", "8", "--attacks", "fgsm", "--work-dir", str(tmp_path / "parts"), "--out", str(out),
            "--threads", "1"]
    assert R.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["complete"] and out.stat().st_size < 1_000_000
    assert res["subset"]["n"] == 20 and res["subset"]["adv_n"] == 10
    cnn = res["models"]["cnn"]
    assert set(cnn["corruptions"]) == {"fog", "jpeg_compression"}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in cnn["corruptions"].values())
    assert cnn["adversarial"]["epsilons_255"] == [0.0, 8.0] and len(cnn["adversarial"]["fgsm"]) == 2
    assert res["data"]["name"] and res["hardware"] and res["command"].startswith("python -m cifar.robustness")
    assert res["summary"]["cnn"]["mean_corruption_accuracy"] == pytest.approx(
        np.mean([a for v in cnn["corruptions"].values() for a in v]))
    parts = sorted((tmp_path / "parts").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in parts}
    # rerun: every part is reused, and the results are the same
    assert R.main(argv) == 0
    assert {p.name: p.stat().st_mtime_ns for p in sorted((tmp_path / "parts").iterdir())} == stamps
    again = json.loads(out.read_text())
    assert again["models"] == res["models"]
    # another seed is another subset: its parts are recomputed, not reused
    assert R.main([*argv, "--seed", "1"]) == 0
    assert any(p.stat().st_mtime_ns != stamps[p.name] for p in (tmp_path / "parts").iterdir() if p.name in stamps)
    assert "wrote" in capsys.readouterr().out


def test_the_cli_explains_a_missing_data_folder(reference_run, tmp_path, capsys):
    assert R.main(["--data-dir", str(tmp_path / "nowhere"), "--checkpoints", str(reference_run)]) == 2
    assert "error:" in capsys.readouterr().err
