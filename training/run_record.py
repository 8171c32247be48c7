"""run.json: what a run folder says about its run, written by the trainer and read by summaries,
reports and exports (no Keras).

A run is *finished* when its run.json says so; such a record must hold finite final metrics.
A run.json with status ``failed`` records why training stopped. Keys this version does not
know are ignored, so that results of other versions stay readable.
"""
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from fileio import read_json, write_json

FILE_NAME = "run.json"
FINAL_KEYS = ("test_accuracy", "remaining_percent", "remaining_count")


class RunRecordError(ValueError):
    """A run.json that exists but is no run record; the message says why."""


def is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RunRecord:
    """The content of run.json; ``final`` holds test_accuracy (a fraction), remaining_percent,
    remaining_count, test_loss and train_accuracy of a finished run."""

    status: Optional[str] = None              # "finished" | "failed"
    experiment: Optional[str] = None
    run_index: Optional[int] = None
    seed: Optional[int] = None
    epochs_trained: Optional[int] = None
    final: Optional[dict] = None
    training_seconds: Optional[float] = None
    versions: Optional[dict] = None
    reason: Optional[str] = None              # failed runs: why training stopped
    init: Optional[dict] = None               # {requested, source: files | on_the_fly, files: [{kind, path, sha256}]}
    precision: Optional[str] = None           # training.precision (float32 | mixed_bfloat16); absent in older records
    sessions: Optional[list] = None           # resumed runs: [{from_epoch, versions}] of each session that trained

    @property
    def finished(self):
        return self.status == "finished"

    def to_json(self):
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, payload):
        """Validate a parsed run.json; RunRecordError names what is wrong."""
        if not isinstance(payload, dict):
            raise RunRecordError("run.json is not a run record (not a JSON object)")
        record = cls(**{key: value for key, value in payload.items() if key in cls.__dataclass_fields__})
        if record.finished:
            final = record.final if isinstance(record.final, dict) else {}
            missing = [key for key in FINAL_KEYS if not is_finite_number(final.get(key))]
            if missing:
                raise RunRecordError(f"run.json lacks final.{missing[0]} (finished without finite final metrics)")
        return record

    @classmethod
    def read(cls, run_directory):
        """The record of a run folder, None without run.json; UnreadableFileError / RunRecordError otherwise."""
        payload = read_json(Path(run_directory) / FILE_NAME)
        return None if payload is None else cls.from_json(payload)

    @classmethod
    def read_finished(cls, run_directory):
        """The record if the run folder's run.json says finished, else None: missing, unreadable or not a
        run record all mean a run still to train (the trainer sets a bad run.json aside)."""
        try:
            record = cls.read(run_directory)
        except ValueError:  # UnreadableFileError, RunRecordError
            return None
        return record if record is not None and record.finished else None

    def write(self, run_directory):
        write_json(Path(run_directory) / FILE_NAME, self.to_json())
