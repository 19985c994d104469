"""cifar.tune's Optuna side in one process: the default grid, a TPE search, and the study as the record."""

from __future__ import annotations

import csv

import optuna
from optuna.trial import TrialState

from cifar import tune
from cifar.study import GRID_READY, JOURNAL_FILE

TINY = ["--model", "cnn", "--epochs", "1", "--val-size", "80", "--limit-train", "64", "--eval-batch-size", "100",
        "--device", "cpu", "--precision", "fp32", "--quiet"]


def fake_fit(calls):
    """train.fit's stand-in: records the config, scores lower lr better."""
    def fit(cfg, splits, run_dir, **kw):
        calls.append(cfg)
        return {"val_acc": 0.5 - cfg.lr, "best_epoch": 1, "epochs_run": cfg.epochs, "wall_time_s": 0.1, "test_acc": 0.4}
    return fit


def study_of(out):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / JOURNAL_FILE)))
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def test_no_values_runs_the_reports_grid_in_grid_order(cifar_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tune, "fit", fake_fit(calls))
    out = tmp_path / "t"
    assert tune.main([*TINY, "--data-dir", str(cifar_root), "--out-dir", str(out)]) == 0
    grid = [(c.lr, c.batch_size) for c in calls]
    assert grid == [(lr, b) for lr in (0.001, 0.003) for b in (32, 64, 128)]
    with open(out / "tune.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lr"]), int(r["batch_size"])) for r in rows] == grid  # the app's heatmap reads these
    study = study_of(out)  # the points were enqueued once, by the process that created the study
    assert study._storage.get_study_system_attrs(study._study_id)[GRID_READY] == 6
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert study.best_params == {"lr": 0.001, "batch_size": 32}


def test_a_tpe_search_runs_its_budget_inside_the_range(cifar_root, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(tune, "fit", fake_fit(calls))
    out = tmp_path / "t"
    argv = [*TINY, "--sampler", "tpe", "--n-trials", "4", "--lr", "1e-4", "1e-2", "--batch-size", "16", "32",
            "--data-dir", str(cifar_root), "--out-dir", str(out)]
    assert tune.main(argv) == 0
    assert len(calls) == 4
    assert all(1e-4 <= c.lr <= 1e-2 and c.batch_size in (16, 32) for c in calls)
    assert len({c.lr for c in calls}) == 4  # drawn from a range, not a list
    assert "best of 4 trials by val acc" in capsys.readouterr().out
    # Rerun with --resume: the budget is spent, nothing trains again.
    assert tune.main([*argv, "--resume"]) == 0
    assert len(calls) == 4 and len(study_of(out).trials) == 4


def test_storage_and_search_flags_are_checked(cifar_root, tmp_path, capsys):
    base = [*TINY, "--data-dir", str(cifar_root), "--out-dir", str(tmp_path / "t")]
    assert tune.main([*base, "--sampler", "tpe", "--n-trials", "0"]) == 2
    assert "--n-trials must be at least 1" in capsys.readouterr().err
    assert tune.main([*base, "--heartbeat-interval", "5", "--grace-period", "5"]) == 2
    assert "--grace-period longer than it" in capsys.readouterr().err
    assert tune.main([*base, "--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --storage postgresql+psycopg2://nobody@127.0.0.1:1/none cannot be opened")
