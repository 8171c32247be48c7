"""Where init_example.py's files live and the error that names one: Keras-free, so train.py can check a
run's files before it claims a results folder (masking/init_files.py reads and writes them)."""
from pathlib import Path

from masking.init_spec import InitSpec


class InitFileError(ValueError):
    """A refused, malformed or mismatching initial-value file (message names the file)."""


def init_file_path(root, model_folder, kind, initializer, run):
    """weights/<model>/<kind>/<distribution>_<scaling>[_x<factor>]/<model>_<kind>_<run>.pkl

    ``model_folder``: the model's name, with its layout options where they differ from the default
    (models.registry.layout_folder, e.g. ResNet20_width2); ``initializer``: an InitSpec or its dict."""
    folder = InitSpec.of(initializer).folder_name()
    return Path(root) / model_folder / kind / folder / f"{model_folder}_{kind}_{run}.pkl"
