"""Structures, flat batches, xarray-backed datasets, file readers, samplers and labelers."""

from nnp_lab.data.batch import Batch
from nnp_lab.data.cache import LabelCache
from nnp_lab.data.dataset import Dataset
from nnp_lab.data.labelers import (
    ASELabeler,
    EMTLabeler,
    Labeler,
    LabelResult,
    PySCFLabeler,
    XTBLabeler,
    label_dataset,
    make_labeler,
)

__all__ = [
    "ASELabeler",
    "Batch",
    "Dataset",
    "EMTLabeler",
    "LabelCache",
    "LabelResult",
    "Labeler",
    "PySCFLabeler",
    "XTBLabeler",
    "label_dataset",
    "make_labeler",
]
