"""Train a planned study (training/study.py): every run in plan order, in this process or as
``train.py --run-index`` children, ``jobs`` at a time. Finished runs are skipped and interrupted ones
resume (the run trainer's own resume); a failed run is reported and the rest continue. Progress lines
give run k of N, the time elapsed and an estimate of the time left (the plan's, rescaled by how the
runs so far compared with it). Ctrl-C stops every child too and raises StudyInterrupted, naming the
runs that were training.
"""
import ctypes
import heapq
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fileio import run_claim
from training.device import import_backend_quietly, quiet_retracing_of_new_models
from training.experiment_folder import claim_results_folder, update_summary
from training.schema import ConfigError, brief
from training.study import resolved

ROOT = Path(__file__).resolve().parents[1]
# A small FCN step is one core's work on CPU (JAX ran it no faster with two threads than with one), so
# children trained side by side get one thread each.
ONE_THREAD = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


# How long a child stopped on Ctrl-C may take to exit before it is killed (its checkpoint is safe either way).
STOP_SECONDS = 30


class StudyInterrupted(Exception):
    """Ctrl-C during a study, every child stopped; ``in_flight`` holds the (experiment folder, run index)
    of each run that was training. Every write is atomic, so each keeps its last finished epoch."""

    def __init__(self, in_flight):
        super().__init__(f"{len(in_flight)} runs in flight")
        self.in_flight = in_flight


def clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def wall_seconds(run_seconds, jobs=1):
    """Wall time of runs started in this order, ``jobs`` at a time, each on the first job to free up;
    assumes a run beside others takes as long as it did timed alone."""
    ends = [0.0] * max(1, min(jobs, len(run_seconds)))
    for seconds in run_seconds:
        heapq.heapreplace(ends, ends[0] + seconds)
    return max(ends)


PR_SET_PDEATHSIG = 1   # linux/prctl.h
# Set in the children: train.py then leaves saying where the runs stand after a stop to the parent.
STUDY_CHILD_ENV = "SUPERMASK_STUDY_CHILD"


def ignore_ctrl_c():
    """In a child before it starts: the terminal sends Ctrl-C to the whole process group, and the parent
    stops its children itself, so that one line (the parent's) says where the runs stand. On Linux the
    child also gets SIGTERM when the parent dies (kill -9 of reproduce.py): no orphan keeps training."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Progress:
    """Elapsed time and an estimate of what is left, rescaled by how finished runs compared with the plan."""

    total: int
    jobs: int = 1
    started: float = field(default_factory=time.perf_counter)
    measured_seconds: float = 0.0
    estimated_seconds: float = 0.0

    def record(self, seconds, estimate):
        if estimate:
            self.measured_seconds += seconds
            self.estimated_seconds += estimate

    def remaining(self, estimates):
        """Text: the rescaled wall time of the known estimates, ``jobs`` at a time, plus how many runs have none."""
        known = [estimate for estimate in estimates if estimate is not None]
        scale = self.measured_seconds / self.estimated_seconds if self.estimated_seconds else 1.0
        untimed = len(estimates) - len(known)
        if untimed and not known:
            return "unknown"
        return clock(scale * wall_seconds(known, self.jobs)) + (f" + {untimed} runs not timed" if untimed else "")

    def line(self, index, label, estimates):
        elapsed = time.perf_counter() - self.started
        return (f"[reproduce] run {index} of {self.total}: {label} (elapsed {clock(elapsed)}, "
                f"estimated remaining {self.remaining(estimates)})")


class StudyRun:
    """One pass over a plan; ``failures`` collects (experiment, run index, reason), ``in_flight`` the
    (experiment folder, run index) of the runs training now."""

    def __init__(self, plan, study, out_root, data_dir=None, verbose=False, log=print):
        self.plan, self.study, self.out = list(plan), study, Path(out_root)
        self.data_dir, self.verbose, self.log = data_dir, verbose, log
        self.jobs = [(planned, index) for planned in self.plan for index in range(planned.runs)]
        self.progress, self.failures, self.refused, self.in_flight = Progress(len(self.jobs)), [], {}, []

    def fail(self, position, name, index, reason):
        self.failures.append((name, index, reason))
        self.log(f"[reproduce] run {position} of {len(self.jobs)} failed: {name} run {index}: {reason}")

    def estimates_from(self, position):
        return [planned.run_estimate(index) for planned, index in self.jobs[position - 1:] if index in planned.to_train]

    def claim(self, position, planned):
        """The planned experiment with its config and folder claimed, or None (its runs fail, with the reason)."""
        if planned.name not in self.refused:
            ready = resolved(planned, self.study, self.out)
            try:
                if ready is None:
                    raise ConfigError(f"{planned.note} (none finished)")
                claim_results_folder(ready.config, self.out)   # checked when planning; another job may have taken it
                return ready
            except ConfigError as error:
                self.refused[planned.name] = f"ConfigError: {error}"
        return None

    def summarize(self, folder):
        try:
            update_summary(self.out / folder)
        except OSError as error:
            self.log(f"[reproduce] warning: summary of {self.out / folder} not written: {error}")

    def in_process(self):
        """Every run in plan order through the run trainer, in this process."""
        self.log(import_backend_quietly())   # the device line instead of the backend's start-up noise
        quiet_retracing_of_new_models()        # each experiment's new model retraces its train step
        from training.runner import RunTrainer

        ready = {}
        for position, (planned, index) in enumerate(self.jobs, start=1):
            if index in planned.shipped:   # finished on another machine: no folder here, nothing to train
                continue
            if planned.name not in ready:
                ready[planned.name] = self.claim(position, planned)
            experiment = ready[planned.name]
            if experiment is None:
                self.fail(position, planned.name, index, self.refused[planned.name])
                continue
            self.log(self.progress.line(position, f"{planned.folder} run {index}", self.estimates_from(position)))
            started, self.in_flight = time.perf_counter(), [(self.out / planned.folder, index)]
            try:
                with run_claim(self.out / planned.folder, index):   # no other job trains this run meanwhile
                    RunTrainer(experiment.config, index, self.out,
                               data_dir=self.data_dir or experiment.config.data.dir, verbose=self.verbose).run()
            except Exception as error:  # one failed run must not stop the others
                self.fail(position, planned.name, index, brief(error))
            else:
                if index in planned.to_train:
                    self.progress.record(time.perf_counter() - started, planned.run_estimate(index))
            self.in_flight = []
            self.summarize(planned.folder)
        return self.finish()

    def children(self, jobs, backend=None):
        """Every unfinished run as its own ``train.py --run-index`` child, ``jobs`` at a time, each on one
        thread when several run (train.py's folder lock and run claims keep concurrent runs apart); an
        experiment whose keep fraction is matched to another starts once that one's runs are done."""
        pending = [(position, planned, index) for position, (planned, index) in enumerate(self.jobs, start=1)
                   if index in planned.to_train]
        running, ready, self.progress.jobs = [], {}, jobs
        self.log(f"[reproduce] {len(pending)} runs to train, {jobs} at a time -> {self.out}")
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"KERAS_BACKEND": backend} if backend else {}),
                       **(ONE_THREAD if jobs > 1 else {}), STUDY_CHILD_ENV: "1"}
        try:
            self.start_and_wait(pending, running, ready, jobs, environment)
        except KeyboardInterrupt:
            self.in_flight = [(self.out / planned.folder, index) for _, planned, index, _ in running]
            stop([child for *_, child in running])
            raise
        return self.finish()

    def start_and_wait(self, pending, running, ready, jobs, environment):
        """Start children while fewer than ``jobs`` run, until every pending run has ended."""
        while pending or running:
            busy = {job[1].name for job in running + pending}
            startable = [job for job in pending if job[1].entry.match_keep_fraction_of not in busy]
            while startable and len(running) < jobs:
                job = startable.pop(0)
                pending.remove(job)
                position, planned, index = job
                if planned.name not in ready:
                    ready[planned.name] = self.claim(position, planned)
                if ready[planned.name] is None:
                    self.fail(position, planned.name, index, self.refused[planned.name])
                    continue
                self.log(self.progress.line(position, f"{planned.folder} run {index}", self.estimates_from(position)))
                command = [sys.executable, str(ROOT / "train.py"), str(planned.config_path), "--run-index", str(index),
                           "--runs", str(planned.runs), "--out", str(self.out), "--quiet",
                           *(["--data-dir", str(self.data_dir)] if self.data_dir else []),
                           *[item for override in ready[planned.name].overrides for item in ("--set", override)]]
                child = subprocess.Popen(command, cwd=ROOT, env=environment, preexec_fn=ignore_ctrl_c)
                running.append((position, planned, index, child))
            if not running:
                continue
            time.sleep(0.5)
            for entry in [entry for entry in running if entry[3].poll() is not None]:
                running.remove(entry)
                position, planned, index, child = entry
                if child.returncode != 0:
                    self.fail(position, planned.name, index, f"train.py exit {child.returncode}")

    def finish(self):
        self.log(f"[reproduce] {len(self.jobs) - len(self.failures)} of {len(self.jobs)} runs finished, "
                 f"{len(self.failures)} failed (elapsed {clock(time.perf_counter() - self.progress.started)})")
        for name, index, reason in self.failures:
            self.log(f"[reproduce] failed: {name} run {index}: {reason}")
        return self.failures


def stop(children):
    """Stop ``children`` (SIGTERM, then SIGKILL after STOP_SECONDS) and wait for them: a stopped run keeps
    its last checkpoint, and the leftovers of an atomic write go at its next start."""
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_study(plan, study, out_root, jobs=1, backend=None, data_dir=None, verbose=False, log=print):
    """Train every run of ``plan``: in this process (``jobs`` 1, no ``backend``), else as children;
    returns the failures as (experiment, run index, reason). Ctrl-C raises StudyInterrupted."""
    trainer = StudyRun(plan, study, out_root, data_dir, verbose, log)
    try:
        if jobs > 1 or backend:
            return trainer.children(jobs, backend)
        return trainer.in_process()
    except KeyboardInterrupt:
        raise StudyInterrupted(trainer.in_flight) from None
