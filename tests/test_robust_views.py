"""The Robustness page's pure parts: reading the results file, its tables and its charts."""

from __future__ import annotations

import json

import pytest

from cifar_app import robust_views as V

RES = {
    "format": 1, "complete": True, "severities": [1, 2, 3, 4, 5], "baseline": "cnn",
    "subset": {"n": 400, "per_class": 40, "seed": 0, "adv_n": 50}, "data": {"name": "CIFAR-10 (JPEG re-encoded copy)"},
    "corruptions": {"fog": {"title": "Fog", "family": "weather"}, "contrast": {"title": "Contrast", "family": "digital"}},
    "models": {
        "cnn": {"clean_accuracy": 0.9, "corruptions": {"fog": [0.8, 0.7, 0.6, 0.5, 0.4], "contrast": [0.9, 0.8, 0.7, 0.6, 0.5]},
                "adversarial": {"epsilons_255": [0, 1, 8], "fgsm": [0.9, 0.5, 0.1], "pgd": [0.9, 0.4, 0.0]}},
        "resnet18": {"clean_accuracy": 0.95, "corruptions": {"fog": [0.9, 0.8, 0.7, 0.6, 0.5]},
                     "adversarial": {"epsilons_255": [0, 1, 8], "fgsm": [0.95, 0.6, 0.2]}},
    },
    "summary": {"cnn": {"clean_accuracy": 0.9, "mean_corruption_accuracy": 0.65, "mean_degradation": 0.25,
                        "mce": 1.0, "relative_mce": 1.0},
                "resnet18": {"clean_accuracy": 0.95, "mean_corruption_accuracy": 0.7, "mean_degradation": 0.25,
                             "mce": None, "relative_mce": None}},
    "timing_s": {"total_compute": 1800}, "written": "2026-12-02T09:00:00+00:00", "hardware": "cpu",
}


def test_read_results(tmp_path):
    path = tmp_path / V.RESULTS_FILE
    assert V.read_results(path) is None
    path.write_text(json.dumps(RES))
    assert V.read_results(path)["baseline"] == "cnn"
    path.write_text("{oops")
    with pytest.raises(V.ResultsError, match="not readable JSON"):
        V.read_results(path)
    path.write_text(json.dumps({"models": {}}))
    with pytest.raises(V.ResultsError, match="summary"):
        V.read_results(path)


def test_rows_hold_every_number_once_with_clean_at_severity_0():
    rows = V.corruption_rows(RES)
    assert len(rows) == 2 * 6 + 1 * 6
    fog0 = [r for r in rows if r["model"] == "ResNet18" and r["corruption"] == "Fog" and r["severity"] == 0]
    assert fog0[0]["accuracy"] == 0.95
    eps = V.epsilon_rows(RES)
    assert {(r["model"], r["attack"]) for r in eps} == {("CustomCNN", "FGSM"), ("CustomCNN", "PGD"), ("ResNet18", "FGSM")}
    table = V.corruption_table(RES)
    assert table[0]["CustomCNN s1–s5 %"] == "80 / 70 / 60 / 50 / 40" and table[0]["CustomCNN mean %"] == 60.0
    assert table[1]["ResNet18 s1–s5 %"] == "—"  # a corruption a partial run lacks
    summary = V.summary_rows(RES)
    assert summary[0]["relative mCE vs CustomCNN %"] == 100.0 and summary[1]["mCE vs CustomCNN %"] is None


@pytest.mark.parametrize("chart", [V.corruption_bars, V.severity_lines, V.epsilon_lines])
def test_charts_encode_both_models(chart):
    spec = chart(RES).to_dict()
    assert spec["encoding"]["color"]["scale"]["domain"] == ["CustomCNN", "ResNet18"]
    values = next(iter(spec["datasets"].values()))
    assert {v["model"] for v in values} == {"CustomCNN", "ResNet18"}
    assert all(0 <= v["accuracy"] <= 1 for v in values)


def test_the_severity_curve_averages_over_corruptions():
    spec = V.severity_lines(RES).to_dict()
    values = next(iter(spec["datasets"].values()))
    cnn = {v["severity"]: v["accuracy"] for v in values if v["model"] == "CustomCNN"}
    assert cnn[0] == pytest.approx(0.9) and cnn[1] == pytest.approx(0.85) and cnn[5] == pytest.approx(0.45)


def test_provenance_names_the_subset_and_a_partial_run():
    assert "400 test images (40 per class, seed 0)" in V.provenance(RES) and "30 min" in V.provenance(RES)
    assert "Partial run" in V.provenance({**RES, "complete": False})


def test_the_epsilon_table_has_one_row_per_budget():
    rows = V.epsilon_table(RES)
    assert [r["ε"] for r in rows] == ["0/255", "1/255", "8/255"]
    assert rows[1] == {"ε": "1/255", "CustomCNN FGSM": 50.0, "CustomCNN PGD": 40.0, "ResNet18 FGSM": 60.0}
