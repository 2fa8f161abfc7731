"""Training: the protocol (decided once) and its two drivers, sequential and batched."""

from harness.training.batched import pack_key, train_pack, train_rounds
from harness.training.protocol import TrainingDiverged, failed_result, seeds
from harness.training.sequential import train_run

__all__ = ["TrainingDiverged", "failed_result", "pack_key", "seeds", "train_pack", "train_rounds", "train_run"]
