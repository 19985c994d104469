"""cifar.tune's trials on Optuna: the storage, the heartbeat, the grid, and the loop each worker runs.

Several worker processes share one study: on one machine (`--workers N`), on machines that share a
filesystem (the journal file), or on a cluster (any SQLAlchemy URL, such as PostgreSQL).

- **No trial runs twice.** Optuna's GridSampler picks a random unvisited point for each new trial,
  and its documentation warns that concurrent workers may pick the same one. So the process that
  creates the study enqueues every grid point once (creating a study is atomic: a second creator
  gets DuplicatedStudyError), and workers only claim enqueued trials, through the storage's atomic
  WAITING → RUNNING step. A trial that a worker created anyway (it asked just as another worker took
  the last point) carries no grid point and is pruned before it trains.
- **A killed worker's trial is retried.** Every running trial records a heartbeat; a trial whose
  heartbeat is older than the grace period is failed by whichever worker notices first, and
  Optuna's RetryHeartbeatStaleTrialCallback enqueues it again with the same parameters. Its run
  folder is the same, so the retry resumes after the last finished epoch. RDBStorage has the
  heartbeat built in; JournalStorage has not, so `HeartbeatJournalStorage` adds it (the beat is a
  trial attribute in the journal, compared with this machine's clock: the machines sharing a
  journal need synchronised clocks, as NTP gives).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

JOURNAL_FILE = "optuna_journal.log"  # the default storage, in --out-dir
HEARTBEAT = "cifar_heartbeat"  # trial system attribute: the journal heartbeat's last beat, in Unix seconds
GRID_READY = "cifar_grid_points"  # study system attribute: how many points the creator enqueued
POINT = "grid_point"  # trial user attribute: the index of the trial's point in the grid
ROW = "row"  # trial user attribute: its CSV row
ERROR = "error"  # trial user attribute: why it failed as a result (a diverged loss), not as a crash
SURPLUS = "surplus"  # trial user attribute: created in a race, pruned before training


class StudyError(RuntimeError):
    """The study cannot be opened or set up; the message says what to do."""


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with the heartbeat that RDBStorage has: stale trials fail and retry."""

    def __init__(self, backend, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None):
        super().__init__(backend)
        self._interval, self._grace, self._callback = heartbeat_interval, grace_period, stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
        except UpdateFinishedTrialError:  # failed as stale by another worker meanwhile: nothing to keep alive
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now, stale = time.time(), []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retry inherits its predecessor's last beat; its own start counts as its first.
            started = t.datetime_start.timestamp() if t.datetime_start else 0.0
            if now - max(t.system_attrs.get(HEARTBEAT, 0.0), started) > self._grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self):
        return self._callback


def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a failed trial: a WAITING copy with the same parameters and attributes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # stable in use since Optuna 2.8
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def is_url(storage: str) -> bool:
    """An SQLAlchemy URL (sqlite:///x.db, postgresql://user@host/db) rather than a journal file path."""
    return "://" in storage


def open_storage(storage: str, heartbeat_interval: int, grace_period: int, max_retry: int) -> BaseStorage:
    """An SQLAlchemy URL → RDBStorage; anything else is the path of a journal file (created if absent)."""
    if heartbeat_interval < 1 or grace_period <= heartbeat_interval:
        raise StudyError(f"--heartbeat-interval must be at least 1 s and --grace-period longer than it "
                         f"(got {heartbeat_interval} and {grace_period})")
    retry = retry_callback(max_retry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if is_url(storage):
            try:
                return RDBStorage(storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                  heartbeat_stale_trial_callback=retry)
            except (ImportError, ModuleNotFoundError) as e:
                raise StudyError(f"--storage {storage}: its database driver is not installed ({e})") from None
            except Exception as e:  # sqlalchemy's errors: unreachable server, bad credentials, bad URL
                raise StudyError(f"--storage {storage} cannot be opened: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0]}") from None
        path = Path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat_interval, grace_period, retry)


@dataclass(frozen=True)
class Space:
    """What the trials try: a grid of points (GridSampler) or a search space (TPE) with a trial budget."""

    sampler: str  # "grid" or "tpe"
    axes: dict[str, list[Any]]  # grid: every value of every axis; tpe: the values a range or a choice spans
    points: list[dict[str, Any]] = field(default_factory=list)  # grid only, in grid order
    n_trials: int = 0  # tpe only
    log_ranges: tuple[str, ...] = ()  # tpe: axes searched log-uniformly between their smallest and largest value

    @property
    def size(self) -> int:
        return len(self.points) if self.sampler == "grid" else self.n_trials

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.sampler == "grid":
            return optuna.samplers.GridSampler(self.axes, seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values, axis by axis (an enqueued trial gets its fixed point back)."""
        values = {}
        for name, options in self.axes.items():
            if name in self.log_ranges:
                values[name] = trial.suggest_float(name, min(options), max(options), log=True)
            else:
                values[name] = trial.suggest_categorical(name, options)
        return values


def open_study(storage: BaseStorage, name: str, space: Space, seed: int) -> tuple[optuna.Study, bool]:
    """Create the study (and enqueue the grid) or load it; (study, created here)."""
    try:
        storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        created = True
    except DuplicatedStudyError:
        created = False
    study = optuna.load_study(study_name=name, storage=storage, sampler=space.make_sampler(seed))
    if created and space.sampler == "grid":
        for i, point in enumerate(space.points):
            study.enqueue_trial(point, user_attrs={POINT: i})
        storage.set_study_system_attr(study._study_id, GRID_READY, len(space.points))
    elif space.sampler == "grid":
        # Another worker created it a moment ago and may still be enqueueing.
        deadline = time.monotonic() + 60
        while GRID_READY not in storage.get_study_system_attrs(study._study_id):
            if time.monotonic() > deadline:
                raise StudyError(f"study {name!r} exists but its grid was never enqueued (its creator died while "
                                 f"setting it up?): delete it (optuna delete-study --study-name {name} "
                                 f"--storage ...) or pick another --study-name")
            time.sleep(0.2)
    return study, created


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating, and enqueue their retries (Optuna's own step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def settled(t: FrozenTrial) -> bool:
    """A trial with a result: finished, or stopped by its own result (a diverged loss is one)."""
    return t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and ERROR in t.user_attrs)


def live(t: FrozenTrial) -> bool:
    return t.state in (TrialState.WAITING, TrialState.RUNNING)


def retried(t: FrozenTrial) -> bool:
    return "failed_trial" in t.system_attrs


@dataclass
class Progress:
    """Where a study stands: trials with a result, trials queued or running, and whether it is done."""

    results: list[FrozenTrial]  # one per grid point (grid order) or per counted trial (number order)
    waiting: int
    running: list[FrozenTrial]
    done: bool
    gave_up: list[int] = field(default_factory=list)  # grid points whose every try crashed (retries used up)


def progress(study: optuna.Study, space: Space) -> Progress:
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if space.sampler == "grid":
        by_point: dict[int, list[FrozenTrial]] = {}
        for t in trials:
            if POINT in t.user_attrs:
                by_point.setdefault(t.user_attrs[POINT], []).append(t)
        results, open_points, gave_up = [], 0, []
        for i in range(len(space.points)):
            tries = by_point.get(i, [])
            done = [t for t in tries if settled(t)]
            if done:
                results.append(done[0])
            elif any(live(t) for t in tries) or not tries:
                open_points += 1
            else:
                gave_up.append(i)
        return Progress(results, waiting, running, open_points == 0, gave_up)
    counted = counted_trials(trials)
    results = [t for t in counted if settled(t)]
    return Progress(results, waiting, running, len(counted) >= space.n_trials and not waiting and not running)


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """A search's trials that use up its budget: with a result, queued or running (not surplus, not crashed)."""
    return [t for t in trials if SURPLUS not in t.user_attrs and (settled(t) or live(t))]


def is_surplus(study: optuna.Study, trial: FrozenTrial, space: Space) -> bool:
    """A trial no point or budget asked for: made by a worker that asked just as another took the last one."""
    if space.sampler == "grid":
        return POINT not in trial.user_attrs
    if retried(trial):
        return False  # a retry replaces a crashed trial
    before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
    return len(counted_trials(before)) >= space.n_trials


def objective(study: optuna.Study, space: Space, run: Callable[[optuna.Trial, dict[str, Any]], dict[str, Any]],
              max_retry: int) -> Callable[[optuna.Trial], float]:
    """Optuna's objective: claim or prune, run one training, return its best val accuracy.

    `run(trial, values)` trains and returns the CSV row. A row with an error (a diverged loss) prunes
    the trial with that error kept: a result, not a crash. A crash or Ctrl-C re-enqueues the trial
    (as the heartbeat's retry would) before it propagates, so `--resume` picks it up.
    """
    def fn(trial: optuna.Trial) -> float:
        if is_surplus(study, study._storage.get_trial(trial._trial_id), space):
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned("surplus: created as another worker took the last trial")
        values = space.suggest(trial)
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        try:
            row = run(trial, values)
        except BaseException:
            retry_callback(max_retry)(study, study._storage.get_trial(trial._trial_id))
            raise
        trial.set_user_attr(ROW, json.loads(json.dumps(row, default=str)))
        if row.get("error"):
            trial.set_user_attr(ERROR, str(row["error"]))
            raise optuna.TrialPruned(str(row["error"]))
        return float(row["best_val_acc"])

    return fn


def work(study: optuna.Study, space: Space, fn: Callable[[optuna.Trial], float], *, poll_s: float = 1.0,
         after_trial: Callable[[], None] = lambda: None, say: Callable[[str], None] = print) -> None:
    """Run trials until the study is done: claim a queued one, else start a search trial, else wait
    for the trials running elsewhere (failing them once their heartbeat stops, which queues a retry)."""
    waiting_for: tuple[int, ...] = ()
    while True:
        fail_stale(study)
        now = progress(study, space)
        if now.done:
            return
        budget_left = space.sampler == "tpe" and len(counted_trials(study.get_trials(deepcopy=False))) < space.n_trials
        if now.waiting or budget_left:
            study.optimize(fn, n_trials=1, catch=())
            after_trial()
            waiting_for = ()
            continue
        running = tuple(sorted(t.number for t in now.running))
        if running != waiting_for:
            say(f"waiting for trial(s) {', '.join(f'#{n}' for n in running)}, running in another worker "
                f"(a stopped worker's trial is retried once its heartbeat is stale)")
            waiting_for = running
        time.sleep(poll_s)
