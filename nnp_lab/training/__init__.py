"""Training: configuration, the Trainer, and evaluation."""

from nnp_lab.training.config import TrainConfig
from nnp_lab.training.evaluation import evaluate, metrics
from nnp_lab.training.trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "evaluate", "metrics"]
