"""Mutation testing of the ML core with mutmut, one module at a time; not part of CI.

    nice -n 10 .venv/bin/python scripts/mutation.py                  # all six modules, one after another
    nice -n 10 .venv/bin/python scripts/mutation.py metrics explain  # only these
    .venv/bin/python scripts/mutation.py --report                    # the scores of finished runs

Each module is mutated alone and its mutants are tested only against the test files that exercise
it (MODULES below), so the whole run stays under an hour on 2 cores. A module runs in its own copy
of the tree, mutants/<module>/ (git-ignored), with setup.cfg's [mutmut] section plus that module's
`only_mutate` and test selection; mutmut then copies it again into mutants/<module>/mutants/ and,
within those tests, runs only the ones that reach the mutated function.

Score = killed / (all mutants - skipped), a timeout counting as killed (mutmut's own definition,
`mutmut badge`). Results: mutants/<module>/result.json; surviving mutants are listed there and can
be shown with `cd mutants/<module> && mutmut show <name>`.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "mutants"

# The tests of test_train.py that run the loop in-process, less three slow ones that add no check of the
# loop's decisions: the SIGKILL test (a subprocess), progressive resizing and "tiny training learns".
TRAIN_RUNS = [
    f"tests/test_train.py::{name}" for name in (
        "test_same_seed_same_start", "test_stop_then_resume_equals_uninterrupted",
        "test_resume_restores_onecycle_ema_and_momentum", "test_resume_of_a_finished_run_rewrites_the_same_checkpoint",
        "test_resume_with_a_changed_config_is_refused", "test_resume_pt_is_written_atomically",
        "test_nan_loss_stops_and_keeps_the_last_good_state", "test_huge_lr_diverges_with_a_clear_error",
        "test_checkpoint_metadata_describes_the_run",
        "test_a_bf16_run_ships_fp32_test_predictions_that_evaluate_reproduces",
        "test_git_commit_outside_a_checkout_falls_back_to_the_environment",
        "test_git_commit_says_when_the_package_differs_from_head",
        "test_train_accuracy_counts_the_images_seen_when_fewer_than_a_batch",
        "test_fp16_gets_a_loss_scaler_that_the_step_uses")]
# Module → the test files that exercise it. A mutant is run against these only (and, within them,
# only against the tests mutmut saw calling the mutated function).
MODULES: dict[str, list[str]] = {
    "metrics": ["tests/test_metrics.py", "tests/test_metrics_ece.py", "tests/test_metrics_edges.py"],
    "checkpoints": ["tests/test_checkpoints.py", "tests/test_checkpoints_edges.py",
                    "tests/test_train_behaviour.py::test_a_failed_save_state_leaves_the_previous_state_intact",
                    "tests/test_train_behaviour.py::test_save_state_replaces_the_file_in_one_step"],
    "data": ["tests/test_data.py", "tests/test_data_edges.py",
             "tests/test_train_behaviour.py::test_make_splits_depends_on_the_split_seed"],
    # test_scorecard.py: the contrast target, batched maps and the reference maps (issue 13) live in explain.py.
    "explain": ["tests/test_explain.py", "tests/test_explain_properties.py", "tests/test_explain_edges.py",
                "tests/test_scorecard.py"],
    # The config's own tests: a training test would rerun a run for each of its ~170 mutants.
    "config": ["tests/test_config_recipes.py", "tests/test_cli.py::test_train_help_lists_every_flag",
               "tests/test_train.py::test_bad_train_sizes_fail_before_training",
               "tests/test_train.py::test_impossible_settings_fail_before_training",
               "tests/test_train.py::test_the_cnn_refuses_progressive_resizing"],
    "train": ["tests/test_train_behaviour.py", *TRAIN_RUNS],
}
# What a test run needs from the tree (the shipped checkpoints are not: these tests train their own).
COPY = ["cifar", "cifar_app", "app_pages", "devkit", "tests", "streamlit_app.py", "setup.cfg"]


def prepare(module: str, fresh: bool) -> Path:
    """mutants/<module>/: a copy of the tree whose setup.cfg scopes mutmut to this module."""
    work = WORK / module
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPY:
        src, dst = REPO / name, work / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dst)
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    section = cfg["mutmut"]
    section["only_mutate"] = f"cifar/{module}.py"
    section["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(MODULES[module])
    with open(work / "setup.cfg", "w") as f:
        cfg.write(f)
    return work


def run_module(module: str, max_children: int, fresh: bool) -> dict:
    """Run mutmut on one module and return its counts, score and wall time."""
    work = prepare(module, fresh)
    # One intra-op thread per test process: mutmut runs max_children of them side by side.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    mutmut = [sys.executable, "-m", "mutmut"]
    t0 = time.perf_counter()
    with open(work / "mutmut.log", "w") as log:
        rc = subprocess.run([*mutmut, "run", "--max-children", str(max_children)], cwd=work, env=env,
                            stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"mutmut failed on {module} (exit {rc}); see {work / 'mutmut.log'}")
    subprocess.run([*mutmut, "export-cicd-stats"], cwd=work, env=env, check=True, capture_output=True)
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    listing = subprocess.run([*mutmut, "results"], cwd=work, env=env, capture_output=True, text=True).stdout
    survivors = [line.split(":")[0].strip() for line in listing.splitlines() if line.rstrip().endswith(": survived")]
    result = {"module": f"cifar/{module}.py", "tests": MODULES[module], "seconds": round(seconds),
              **stats, "score": score(stats), "survived_names": survivors}
    (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


def score(stats: dict) -> float:
    """mutmut's mutation score in %: (killed + timeout) / (total - skipped)."""
    tested = stats["total"] - stats.get("skipped", 0)
    return round(100 * (stats["killed"] + stats.get("timeout", 0)) / tested, 1) if tested else 0.0


def report() -> None:
    """One line per module with a finished run."""
    print(f"{'module':20} {'mutants':>8} {'killed':>7} {'timeout':>8} {'survived':>9} {'other':>6} {'score':>7} {'time':>7}")
    for module in MODULES:
        path = WORK / module / "result.json"
        if not path.exists():
            print(f"{'cifar/' + module + '.py':20} (no finished run)")
            continue
        r = json.loads(path.read_text())
        other = r["total"] - r["killed"] - r.get("timeout", 0) - r["survived"]
        print(f"{r['module']:20} {r['total']:8} {r['killed']:7} {r.get('timeout', 0):8} {r['survived']:9} {other:6} "
              f"{r['score']:6.1f}% {r['seconds'] / 60:5.1f}min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"of cifar/: {', '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--resume", action="store_true", help="keep a module's earlier results (mutmut skips "
                        "mutants it has already tested); default: start the module afresh")
    parser.add_argument("--report", action="store_true", help="only print the scores of finished runs")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}; valid: {', '.join(MODULES)}")
    if not args.report:
        for module in args.modules or MODULES:
            r = run_module(module, args.max_children, fresh=not args.resume)
            print(f"{r['module']}: {r['score']}% killed ({r['total']} mutants, {r['survived']} survived) "
                  f"in {r['seconds'] / 60:.1f} min", flush=True)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
