"""Learngene: a growing collective network, learngenes taken from it, and few-shot individuals.

Pure PyTorch + numpy; knows nothing of HTTP, SQL or queues.

    from learngene import Collective, InputSpec, Learngene, TrainOptions, load_dataset, train_individual
    c = Collective.create(InputSpec(channels=1, size=32), preset="small")
    for path in task_files:
        c.learn_task(load_dataset(path))
    lg = Learngene.extract(c)                      # layers + the scores that justify them
    ind = train_individual(load_dataset("support.npz"), lg, TrainOptions(), trunk=Learngene.whole(c))
    ind.init, ind.metrics["auto"], ind.predict(images)     # init="auto" picked learngene, scratch or instant
"""
from .collective import Collective, CollectiveOptions
from .data import (DatasetError, InputSpec, Limits, TaskDataset, decode_image, load_dataset, load_images_npz,
                   load_npz, load_zip, npz_bytes, save_npz, to_input)
from .device import select_device
from .genes import Learngene
from .individual import INITS, Individual, TrainOptions, train_individual
from .model import PRESETS, ConvNet, NetConfig, count_parameters, widen_layer
from .selection import DEFAULT_METHOD, METHODS, ValidationOptions, extract_learngene
from .training import Cancelled

__all__ = [
    "Cancelled", "Collective", "CollectiveOptions", "ConvNet", "DEFAULT_METHOD", "DatasetError", "INITS",
    "Individual", "InputSpec", "Learngene", "Limits", "METHODS", "NetConfig", "PRESETS", "TaskDataset",
    "TrainOptions", "ValidationOptions", "count_parameters", "decode_image", "extract_learngene", "load_dataset",
    "load_images_npz", "load_npz", "load_zip", "npz_bytes", "save_npz", "select_device", "to_input",
    "train_individual", "widen_layer",
]
