"""Did an experiment run the protocol of the paper row it fills? Its config against the row's config.

A paper row's protocol is the repository's config for it (``configs/<row>_<side>.yaml``: epochs,
data, optimizer, schedule, initializers). An experiment whose config plans less (fewer epochs,
fewer training or test images, fewer passes per epoch) is *shorter*: the report marks it (e.g.
"2/100 ep") and gives it no Δ to the paper. Any other result-changing difference (``--set`` overrides,
study variants) is listed in a note. Keys that change no result (``affects_results=False``), the seed
and the init-file folder are not compared.
"""
import functools
from dataclasses import dataclass
from pathlib import Path

from training.config import ExperimentConfig, load_config, saved_config
from training.schema import shown, to_dict, without_keys_that_keep_results

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NOT_COMPARED = ("experiment", "seed", "init.weights_dir")


def _fewer(ours, protocol):
    return ours < protocol


def _limited(ours, protocol):
    """A train/test limit shortens the protocol when it is set and below the protocol's (None = all images)."""
    return ours is not None and (protocol is None or ours < protocol)


# key -> (is it shorter than the protocol, the marker that says by how much)
LENGTH_KEYS = {
    "training.epochs": (_fewer, lambda ours, protocol: f"{ours}/{protocol} ep"),
    "data.train_limit": (_limited, lambda ours, protocol: f"{ours} train images"),
    "data.test_limit": (_limited, lambda ours, protocol: f"{ours} test images"),
    "data.repeat": (_fewer, lambda ours, protocol: f"{ours}/{protocol} passes per epoch"),
}


@dataclass(frozen=True)
class ProtocolCheck:
    """An experiment against the config of its paper row: ``shorter`` and ``other`` differences are
    (dotted key, ours, protocol); ``unreadable`` says why the experiment's config could not be compared."""

    reference: str
    shorter: tuple = ()
    other: tuple = ()
    unreadable: str = ""

    @property
    def marker(self):
        """'2/100 ep' for a shorter protocol; '' when it ran the row's protocol length."""
        return ", ".join(LENGTH_KEYS[key][1](ours, protocol) for key, ours, protocol in self.shorter)

    @property
    def noted(self):
        return bool(self.shorter or self.other or self.unreadable)

    def note(self):
        """One sentence for the report's protocol notes."""
        if self.unreadable:
            return f"its config cannot be compared with {self.reference} ({self.unreadable})"
        parts = [f"shorter than the protocol ({_listed(self.shorter)}), so no Δ to the paper"] if self.shorter else []
        if self.other:
            parts.append(f"{'also ' if self.shorter else ''}differs in {_listed(self.other)}")
        return f"against {self.reference}: " + "; ".join(parts)


def _listed(differences, limit=6):
    text = ", ".join(f"{key} {shown(ours, 30)} (protocol {shown(protocol, 30)})" for key, ours, protocol
                     in differences[:limit])
    return text + (f" and {len(differences) - limit} more" if len(differences) > limit else "")


def reference_config(key, side):
    """configs/<row>_<side>.yaml of a paper row ('Conv2', 'baseline' -> configs/conv2_baseline.yaml)."""
    return CONFIGS / f"{key.lower()}_{'baseline' if side == 'baseline' else 'signed'}.yaml"


@functools.lru_cache(maxsize=None)
def _protocol(path):
    return compared_values(load_config(path))


def compared_values(config):
    """{dotted key: value} of every result-changing key of a parsed config."""
    flat = {}

    def walk(node, prefix):
        for name, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{name}.")
            elif f"{prefix}{name}" not in NOT_COMPARED:
                flat[f"{prefix}{name}"] = value

    walk(without_keys_that_keep_results(ExperimentConfig, to_dict(config)), "")
    return flat


def check_protocol(raw_config, key, side):
    """The ProtocolCheck of an experiment's raw config against paper row ``key``; None without a row config."""
    path = reference_config(key, side)
    if not path.is_file():
        return None
    return compare_configs(raw_config, _protocol(path), f"configs/{path.name}")


def check_own_config(raw_config, experiment_name):
    """The ProtocolCheck of an experiment that fills no paper row against the config it is named after
    (``resnet56_cifar10_signed+training.epochs=1`` against configs/resnet56_cifar10_signed.yaml; also under
    configs/ablations/ and configs/mask_modes/), so that a shortened run of it is marked too; None where no
    such config exists or it does not load."""
    stem = Path(experiment_name).name.split("+", 1)[0]
    path = next((path for path in (CONFIGS / f"{stem}.yaml", CONFIGS / "ablations" / f"{stem}.yaml",
                                   CONFIGS / "mask_modes" / f"{stem}.yaml") if path.is_file()), None)
    try:
        protocol = _protocol(path) if path else None
    except (OSError, ValueError):   # a config of the user's that does not load: nothing to compare against
        return None
    return None if protocol is None else compare_configs(raw_config, protocol, f"configs/{path.name}")


def compare_configs(raw_config, protocol, name):
    """The ProtocolCheck of an experiment's raw config against ``protocol`` (compared_values of the
    reference config), called ``name`` in notes: report.py's check against a paper row, and a study's
    against the experiment as the study defines it (reporting/studies.py)."""
    try:
        ours = compared_values(saved_config(raw_config, "config.yaml"))
    except (TypeError, ValueError) as error:
        return ProtocolCheck(name, unreadable=str(error)[:120])
    differences = [(key, ours.get(key), value) for key, value in protocol.items() if ours.get(key) != value]
    shorter = tuple(item for item in differences if item[0] in LENGTH_KEYS and LENGTH_KEYS[item[0]][0](*item[1:]))
    other = tuple(item for item in differences if item not in shorter)
    return ProtocolCheck(name, shorter, other)
