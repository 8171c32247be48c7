"""NumPy data path (no TensorFlow): dataset loading, per-image standardization, per-epoch arrays."""
from data.datasets import (DATASET_NAMES, Dataset, DatasetError, check_offline_file, clear_dataset_cache, load_dataset,
                           per_image_standardization, resolve_data_dir)
from data.pipeline import augment_pad_flip_crop, epoch_arrays, epoch_order

__all__ = [
    "DATASET_NAMES", "Dataset", "DatasetError", "check_offline_file", "clear_dataset_cache", "load_dataset",
    "per_image_standardization", "resolve_data_dir",
    "augment_pad_flip_crop", "epoch_arrays", "epoch_order",
]
