"""densemtl_core: dense multi-task scene understanding (DenseMTL) in plain PyTorch."""

__version__ = "0.1.0"
