"""Target-domain images for adaptation: a dataset's images, never its labels."""
from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset

TARGET_KEYS = ("image",)
"""What a target sample keeps."""


class TargetImages(Dataset):
    """The samples of ``dataset`` reduced to their image.

    The other entries of a sample (labels, has_ flags) are dropped without being looked at, so
    an adapting run cannot learn from the target's labels even when its dataset has them (a
    labelled recording of the target domain, the synthetic shifted domain, Cityscapes).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        for name in ("num_classes", "class_names", "class_colors"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = self.dataset[index]
        return {key: sample[key] for key in TARGET_KEYS}
