"""Training objectives: what the network learns from, composed by the trainer."""
from __future__ import annotations

from .base import Batch, Objective, Outputs, Step

__all__ = ["Batch", "Objective", "Outputs", "Step"]
