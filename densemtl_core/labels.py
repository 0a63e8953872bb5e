"""Label conventions shared by the datasets, the segmentation loss and its meter."""

IGNORE_INDEX = 250
"""Semantic label of pixels that are neither supervised nor evaluated."""
