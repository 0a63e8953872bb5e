"""Samples made of recorded frames, a few of which may not decode (a corrupt message, a broken
image file): such a sample is skipped, never the epoch."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from .transforms import Sample

_log = logging.getLogger(__name__)


class UnreadableFrame(Exception):
    """A frame whose image does not decode: its sample is skipped."""


class FrameSamples(Dataset):
    """Base of the recording and image-folder datasets: ``samples[i]`` names the frames of
    sample i (one, or a triplet), :meth:`make_sample` decodes them.

    A sample whose frame raises :class:`UnreadableFrame` is remembered, logged once and counted
    in ``skipped``, and the next readable sample takes its place; only when none is left is it
    an error (:meth:`nothing_decodes`).
    """

    def __init__(self, samples: list[tuple[Any, ...]],
                 transform: Callable[[Sample], Sample] | None) -> None:
        self.samples = samples
        self.transform = transform
        self.skipped = 0
        """Samples whose image did not decode, replaced by another one (this process)."""
        self._bad: set[int] = set()

    def make_sample(self, frames: tuple[Any, ...]) -> Sample:
        raise NotImplementedError

    def nothing_decodes(self) -> Exception:
        """The error when no sample at all can be read: names the recording or folder."""
        raise NotImplementedError

    def describe(self, frames: tuple[Any, ...]) -> str:
        """Where a sample's frames come from, for the one warning about skipped samples."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        for attempt in range(len(self.samples)):
            candidate = (index + attempt) % len(self.samples)
            if candidate in self._bad:
                continue
            try:
                sample = self.make_sample(self.samples[candidate])
            except UnreadableFrame as error:
                self._bad.add(candidate)
                self.skipped += 1
                if self.skipped == 1:
                    _log.warning("skipping a sample of %s whose image does not decode (%s); "
                                 "further ones are counted in the dataset's skipped",
                                 self.describe(self.samples[candidate]), error)
                continue
            return self.transform(sample) if self.transform is not None else sample
        raise self.nothing_decodes()
