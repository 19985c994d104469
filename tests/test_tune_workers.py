"""cifar.tune's workers sharing one Optuna study, as real processes: a journal file, a killed worker, PostgreSQL.

- Two workers share a journal file in a temp folder; one is killed (SIGKILL) mid-trial. The other
  fails the dead worker's trial once its heartbeat is stale, runs the retry, and the study ends with
  every grid point done exactly once.
- `--workers 2` on a real PostgreSQL server (Debian's `postgresql` package, which .ci/run installs),
  started here on a free local port in a temp data directory, completes a 4-point grid with no
  duplicates. Skipped, with the reason, only where the server is not installed.
"""

from __future__ import annotations

import csv
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cifar.study import JOURNAL_FILE, POINT

REPO = Path(__file__).resolve().parents[1]
# 4 points of well under a second each (on a quiet machine): CustomCNN, one epoch of 64 images, CPU fp32.
GRID = ["--lr", "0.001", "0.002", "--batch-size", "16", "32"]
TINY = ["--model", "cnn", "--epochs", "1", "--val-size", "80", "--limit-train", "64", "--eval-batch-size", "100",
        "--device", "cpu", "--precision", "fp32", "--quiet"]


def tune_cmd(cifar_root, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cifar.tune", *TINY, *GRID, "--data-dir", str(cifar_root), "--out-dir", str(out),
            *extra]


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def only_study(storage) -> optuna.Study:
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage)


def assert_each_point_once(study: optuna.Study, csv_path: Path) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs[POINT] for t in complete) == [0, 1, 2, 3]
    assert len({(t.params["lr"], t.params["batch_size"]) for t in complete}) == 4
    # Nothing else trained: any other trial is a surplus one, pruned before training, or a crashed one.
    assert all(t.state in (TrialState.PRUNED, TrialState.FAIL) for t in trials if t not in complete)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["lr"], r["batch_size"]) for r in rows) == sorted(
        (str(t.params["lr"]), str(t.params["batch_size"])) for t in complete)
    return complete


def test_a_killed_workers_trial_is_failed_and_retried(cifar_root, tmp_path):
    out = tmp_path / "tune"
    # Started as on machines sharing a folder: each its own command, --resume to join the study.
    cmd = tune_cmd(cifar_root, out, "--resume", "--heartbeat-interval", "1", "--grace-period", "3")
    survivor, victim = start(cmd), start(cmd)
    journal = out / JOURNAL_FILE
    deadline = time.monotonic() + 90
    victims_trial = None
    while victims_trial is None:
        assert time.monotonic() < deadline, "the second worker never started a trial"
        assert victim.poll() is None, victim.communicate()[0]
        if journal.exists():
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
            if optuna.get_all_study_names(storage):
                running = [t for t in only_study(storage).get_trials(deepcopy=False)
                           if t.state == TrialState.RUNNING and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
                victims_trial = running[0] if running else None
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # mid-trial: it has just started
    victim.wait()
    text, _ = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, text

    study = only_study(optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))))
    complete = assert_each_point_once(study, out / "tune.csv")
    killed = study.trials[victims_trial.number]
    assert killed.state == TrialState.FAIL
    retry = [t for t in complete if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].user_attrs[POINT] == killed.user_attrs[POINT]
    assert retry[0].user_attrs["worker"].endswith(f":{survivor.pid}")
    # Trained exactly four times to the end: one finished run per point, none twice.
    logs = [p.read_text() for p in out.glob("*/train.log")]
    assert len(logs) == 4 and all(log.count("best epoch") == 1 for log in logs)


# --------------------------------------------------------------------------------------- PostgreSQL

def postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, /usr/local/bin, or Debian's /usr/lib/postgresql/<ver>/bin."""
    candidates = [Path(p).parent for p in (shutil.which("initdb"),) if p] + [Path("/usr/local/bin")]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server on a free local port, in a temp data directory; stopped and removed after."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH, in /usr/local/bin or "
                    "/usr/lib/postgresql/*/bin); on Debian: apt-get install postgresql, as .ci/run does")
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="cifar-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the package's postgres user
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
        os.chown(data, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "server.log"), "-w",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -F", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_on_postgresql_complete_the_grid_once(cifar_root, tmp_path, postgres_url):
    out = tmp_path / "tune"
    proc = start(tune_cmd(cifar_root, out, "--workers", "2", "--storage", postgres_url))
    text, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, text
    assert "best of 4 trials by val acc" in text
    complete = assert_each_point_once(only_study(postgres_url), out / "tune.csv")
    assert {t.user_attrs["worker"].split(":")[0] for t in complete} == {socket.gethostname()}
    assert not (out / JOURNAL_FILE).exists()  # the study lives in PostgreSQL only
