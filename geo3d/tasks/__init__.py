"""Training and evaluation: ``train``, ``evaluate``, ``TrainConfig``, metrics, checkpoints, DDP."""

from geo3d.tasks.checkpoint import load_checkpoint, save_checkpoint
from geo3d.tasks.config import TrainConfig
from geo3d.tasks.evaluate import evaluate
from geo3d.tasks.metrics import ConfusionMatrix, confusion_matrix, metrics_from_confusion
from geo3d.tasks.train import TrainResult, cosine_schedule, seed_everything, train
from geo3d.tasks import tracking  # geo3d.tasks.tracking.Tracker, TrackerConfig
from geo3d.tasks.seg_to_boxes import segmentation_to_boxes

__all__ = ["TrainConfig", "train", "TrainResult", "evaluate", "save_checkpoint",
           "load_checkpoint", "ConfusionMatrix", "confusion_matrix", "metrics_from_confusion",
           "cosine_schedule", "seed_everything", "segmentation_to_boxes"]
