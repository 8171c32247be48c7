"""Per-epoch scalars as a TensorBoard event file, written without TensorFlow.

``keras.callbacks.TensorBoard`` needs TensorFlow, and the ``tensorboard`` package is not a
dependency; an event file of scalars is simple enough to write directly: TFRecord framing
(length, masked CRC-32C, payload, masked CRC-32C) around ``Event`` protocol buffers holding
``Summary.Value(tag, simple_value)``. So it works the same on every Keras backend.

The folder is derived state: at every (re)start the run writes one new event file with the
whole history so far (taken from the checkpoint) and removes the older files, so a kill and
rerun leave each epoch exactly once, whatever the moment of the kill.
"""
import os
import socket
import struct
import time
from pathlib import Path

from fileio import atomic_write_bytes, make_folder

FOLDER = "tensorboard"


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(payload):
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", _masked_crc(length)) + payload + struct.pack("<I", _masked_crc(payload))


def _varint(value):
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, content):
    return _varint(number << 3 | wire_type) + content


def _length_delimited(number, content):
    return _field(number, 2, _varint(len(content)) + content)


def event(step, wall_time, scalars=None, file_version=None):
    """One serialized Event: wall_time=1 (double), step=2 (int64), file_version=3, summary=5."""
    payload = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        payload += _length_delimited(3, file_version.encode())
    if scalars:
        values = b"".join(_length_delimited(1, _length_delimited(1, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
                          for tag, value in scalars.items())
        payload += _length_delimited(5, values)
    return _record(payload)


def epoch_scalars(history, index):
    """The scalars of history entry ``index`` (0 = before training: masks only)."""
    scalars = {}
    if index > 0:
        for tag, key in (("loss/train", "train_loss"), ("loss/test", "test_loss"), ("accuracy/train", "train_accuracy"),
                         ("accuracy/test", "test_accuracy"), ("learning_rate", "learning_rate")):
            value = history[key][index - 1]
            if value is not None:
                scalars[tag] = float(value)
    scalars["remaining_percent"] = float(history["remaining_percent"][index])
    for layer, counts in sorted(history["mask_counts"][index].items()):
        total = sum(counts.values())
        for kind in ("kept", "hidden", "inverted"):
            scalars[f"masks/{layer}/{kind}"] = counts[kind] / total if total else 0.0
    return scalars


class ScalarLog:
    """Writes the scalars of a run's history into ``<run folder>/tensorboard``; step = epochs done."""

    def __init__(self, run_folder):
        self.folder = Path(run_folder) / FOLDER
        self.path = None

    def restart(self, history):
        """A new event file with every entry of ``history``; older event files of the run removed."""
        make_folder(self.folder)
        older = [path for path in self.folder.glob("*tfevents*") if path.is_file()]
        now = time.time()
        self.path = self.folder / f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.supermask"
        content = event(0, now, file_version="brain.Event:2") + b"".join(
            event(index, now, epoch_scalars(history, index)) for index in range(len(history["remaining_percent"])))
        atomic_write_bytes(self.path, content)
        for path in older:
            if path != self.path:
                path.unlink(missing_ok=True)

    def append(self, history):
        """The last history entry, appended to the current file."""
        index = len(history["remaining_percent"]) - 1
        with open(self.path, "ab") as stream:
            stream.write(event(index, time.time(), epoch_scalars(history, index)))
