"""Evaluation metrics accumulated over a whole dataset (METHOD.md section 4).

Each meter keeps only additive statistics (confusion matrices, sums of per-image quantities and
image counts), so metrics are exact over the dataset rather than means of per-batch means, and the
state of a dataset split across processes is the element-wise sum of the per-process states:
all-reduce every tensor of :meth:`Meter.state` and give the result to :meth:`Meter.load_state`.
Inputs are decoded predictions at the label resolution; invalid pixels are ignored.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .depth_coding import released_code_depth
from .labels import IGNORE_INDEX

class Meter:
    """Base of all meters: an additive state that can be reset, exported, summed and restored.

    ``main_metric``: the key of :meth:`compute` used for model selection, Δm and worst/best
    frames; ``higher_is_better``: its direction.
    """

    main_metric: str
    higher_is_better: bool

    def __init__(self) -> None:
        self._state = self._empty_state()

    def _empty_state(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        self._state = self._empty_state()

    def state(self) -> dict[str, Tensor]:
        """A copy of the accumulated statistics (on the device of the data seen so far)."""
        return {name: value.clone() for name, value in self._state.items()}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Replace the statistics, e.g. by the sum of the states of all processes."""
        expected = self._empty_state()
        if set(state) != set(expected):
            raise KeyError(f"state keys {sorted(state)} differ from {sorted(expected)}")
        for name, value in expected.items():
            if state[name].shape != value.shape:
                raise ValueError(f"state[{name!r}] has shape {tuple(state[name].shape)}, "
                                 f"expected {tuple(value.shape)}")
        self._state = {name: state[name].detach().to(value.dtype).clone()
                       for name, value in expected.items()}

    def _accumulate(self, **increments: Tensor) -> None:
        # The state follows the data's device, so evaluation on a GPU never waits for a copy.
        for name, increment in increments.items():
            current = self._state[name]
            self._state[name] = current.to(increment.device) + increment.to(current.dtype)


def _masked_image_means(values: Tensor, valid: Tensor) -> Tensor:
    """Per-image mean of BxN ``values`` over the ``valid`` entries; 0 for an image with none."""
    count = valid.sum(dim=1).clamp_min(1)
    return torch.where(valid, values, torch.zeros_like(values)).sum(dim=1) / count


def _masked_image_medians(values: Tensor, valid: Tensor) -> Tensor:
    """Per-image median of BxN ``values`` over the ``valid`` entries (lower middle value for an
    even count, as ``torch.median``); NaN for an image with none."""
    return torch.where(valid, values, torch.full_like(values, math.nan)).nanmedian(dim=1).values


class SegmentationMeter(Meter):
    """Confusion matrix over the dataset; mIoU, pixel accuracy and mean class accuracy.

    A class absent from both the ground truth and the prediction has no IoU and is left out of the
    mean (nan-mean); pixels labelled ``ignore_index`` are not counted.
    """

    main_metric = "miou"
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        super().__init__()

    def _empty_state(self) -> dict[str, Tensor]:
        return {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)}

    def update(self, pred_labels: Tensor, target: Tensor) -> None:
        """``pred_labels`` and ``target``: BxHxW integer class ids."""
        if pred_labels.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred_labels.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        labelled = target != self.ignore_index
        truth, pred = target[labelled].long(), pred_labels[labelled].long()
        n = self.num_classes
        if ((truth < 0) | (truth >= n) | (pred < 0) | (pred >= n)).any():
            raise ValueError(f"class ids must lie in [0, {n}) or equal {self.ignore_index}")
        counts = torch.bincount(truth * n + pred, minlength=n * n).reshape(n, n)
        self._accumulate(confusion=counts)

    def _iou(self) -> Tensor:
        confusion = self._state["confusion"].double()
        hits = confusion.diagonal()
        return hits / (confusion.sum(dim=0) + confusion.sum(dim=1) - hits)

    def per_class_iou(self) -> list[float]:
        """IoU of every class, NaN for a class absent from both ground truth and prediction."""
        return self._iou().tolist()

    def compute(self) -> dict[str, float]:
        confusion = self._state["confusion"].double()
        hits = confusion.diagonal()
        return {
            "miou": self._iou().nanmean().item(),
            "pixel_acc": (hits.sum() / confusion.sum()).item(),
            "mean_class_acc": (hits / confusion.sum(dim=1)).nanmean().item(),
        }


class DepthMeter(Meter):
    """Standard monocular-depth errors on metric depth, computed per image and averaged over images.

    Pixels count when min_depth < target < max_depth (target 0 marks invalid depth); predictions
    are clamped to [min_depth, max_depth]. AbsRel, SqRel, the δ accuracies and the squared errors
    are means over an image's valid pixels, averaged over the images that have any; RMSE and
    RMSE-log are square roots of the averaged per-image squared errors, as in the method.
    ``median_scaling`` multiplies each prediction by median(target) / median(prediction) over its
    valid pixels before clamping (for scale-ambiguous, self-supervised depth).

    ``paper_compat`` scores as the released code does (METHOD.md sections 4.2 and 9.1): both
    prediction and target, given in metres, become the depth its 655.36 / d - 1 decoding gives
    (0.99 m short), and the range mask, the median scaling and the clamp apply to that depth; a
    target under 0.991 m drops out. Only the scores change: predictions stay metres everywhere.
    A prediction the model's decoding clamped at its ``max_depth`` scores as max_depth - 0.99
    here, where the released code's clamp after decoding lets it reach max_depth.
    """

    main_metric = "rmse"
    higher_is_better = False

    _PER_IMAGE = ("abs_rel", "sq_rel", "mse", "mse_log", "delta1", "delta2", "delta3")

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0,
                 median_scaling: bool = False, paper_compat: bool = False) -> None:
        if not 0 <= min_depth < max_depth:
            raise ValueError("need 0 <= min_depth < max_depth")
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.median_scaling = median_scaling
        self.paper_compat = paper_compat
        super().__init__()

    def _empty_state(self) -> dict[str, Tensor]:
        state = {name: torch.zeros((), dtype=torch.float64) for name in self._PER_IMAGE}
        state["images"] = torch.zeros((), dtype=torch.int64)
        return state

    def update(self, pred_m: Tensor, target_m: Tensor) -> None:
        """``pred_m``, ``target_m``: Bx1xHxW or BxHxW depth in metres."""
        batch = target_m.shape[0]
        pred = pred_m.reshape(batch, -1).double()
        target = target_m.reshape(batch, -1).double()
        valid = target > 0
        if self.paper_compat:
            pred, target = released_code_depth(pred), released_code_depth(target)
        valid &= (target > self.min_depth) & (target < self.max_depth)
        if self.median_scaling:
            scale = _masked_image_medians(target, valid) / _masked_image_medians(pred, valid)
            pred = pred * scale[:, None]
        pred = pred.clamp(self.min_depth, self.max_depth)
        # Invalid pixels are replaced by a harmless 1 m so that no NaN or inf reaches the sums.
        ones = torch.ones_like(target)
        pred, target = torch.where(valid, pred, ones), torch.where(valid, target, ones)
        ratio = torch.maximum(pred / target, target / pred)
        per_pixel = {
            "abs_rel": (pred - target).abs() / target,
            "sq_rel": (pred - target).square() / target,
            "mse": (pred - target).square(),
            "mse_log": (pred.log() - target.log()).square(),
            "delta1": (ratio < 1.25).double(),
            "delta2": (ratio < 1.25 ** 2).double(),
            "delta3": (ratio < 1.25 ** 3).double(),
        }
        self._accumulate(images=(valid.sum(dim=1) > 0).sum(), **{
            name: _masked_image_means(values, valid).sum() for name, values in per_pixel.items()})

    def compute(self) -> dict[str, float]:
        images = self._state["images"].double()
        mean = {name: (self._state[name] / images).item() for name in self._PER_IMAGE}
        return {
            "abs_rel": mean["abs_rel"],
            "sq_rel": mean["sq_rel"],
            "rmse": math.sqrt(mean["mse"]),
            "rmse_log": math.sqrt(mean["mse_log"]),
            "delta1": mean["delta1"],
            "delta2": mean["delta2"],
            "delta3": mean["delta3"],
        }


class NormalsMeter(Meter):
    """Angular error of surface normals in degrees, per image, averaged over images.

    Both prediction and target are L2-normalised, so the error 2·atan2(|p − g|, |p + g|) is the
    exact angle. Pixels whose target norm is ≤ 0.5 (zero vectors mark invalid normals) are
    ignored.
    Keys: ``mean``, ``median``, ``rmse`` (root of the averaged per-image mean squared error) and
    ``within_11_25``/``within_22_5``/``within_30`` (percent of pixels under that angle).
    """

    main_metric = "mean"
    higher_is_better = False

    _WITHIN = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}

    def _empty_state(self) -> dict[str, Tensor]:
        names = ("mean", "median", "mse", *self._WITHIN)
        state = {name: torch.zeros((), dtype=torch.float64) for name in names}
        state["images"] = torch.zeros((), dtype=torch.int64)
        return state

    def update(self, pred: Tensor, target: Tensor) -> None:
        """``pred``: Bx3xHxW (any length), ``target``: Bx3xHxW unit normals or zero vectors."""
        batch = target.shape[0]
        valid = (target.norm(dim=1) > 0.5).reshape(batch, -1)
        p = F.normalize(pred.double(), dim=1)
        g = F.normalize(target.double(), dim=1)
        angle = torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))
        angle = angle.reshape(batch, -1)
        has_pixels = valid.sum(dim=1) > 0
        medians = _masked_image_medians(angle, valid)
        sums = {
            "mean": _masked_image_means(angle, valid).sum(),
            "median": torch.where(has_pixels, medians, torch.zeros_like(medians)).sum(),
            "mse": _masked_image_means(angle.square(), valid).sum(),
        }
        for name, limit in self._WITHIN.items():
            sums[name] = 100.0 * _masked_image_means((angle < limit).double(), valid).sum()
        self._accumulate(images=has_pixels.sum(), **sums)

    def compute(self) -> dict[str, float]:
        images = self._state["images"].double()
        mean = {name: (value / images).item() for name, value in self._state.items()
                if name != "images"}
        return {
            "mean": mean["mean"],
            "median": mean["median"],
            "rmse": math.sqrt(mean["mse"]),
            **{name: mean[name] for name in self._WITHIN},
        }


def _dilate_values(values: Tensor, radius: int) -> Tensor:
    """Maximum of a BxHxW map over a (2 radius + 1)² window around each pixel."""
    if radius == 0:
        return values
    return F.max_pool2d(values[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0]


def _count_at_least(values: Tensor, thresholds: Tensor) -> Tensor:
    """For each ascending threshold t_i, how many ``values`` are >= t_i (one pass, no loop)."""
    passed = torch.bucketize(values.reshape(-1), thresholds, right=True)  # thresholds <= value
    histogram = torch.bincount(passed, minlength=len(thresholds) + 1)
    return histogram.flip(0).cumsum(0).flip(0)[1:]


def _dilate(mask: Tensor, radius: int) -> Tensor:
    """Grow a BxHxW boolean mask by ``radius`` pixels in Chebyshev distance (square window)."""
    return _dilate_values(mask.float(), radius).bool()


# Zhang-Suen neighbours P2..P9, clockwise from north, as (row, column) offsets.
_NEIGHBOUR_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
# Per sub-iteration, the two neighbour triples (indices into P2..P9) of which at least one pixel
# must be background: (P2,P4,P6) and (P4,P6,P8), then (P2,P4,P8) and (P2,P6,P8).
_ZHANG_SUEN_TRIPLES = (((0, 2, 4), (2, 4, 6)), ((0, 2, 6), (0, 4, 6)))


def thin_edges(mask: Tensor) -> Tensor:
    """Zhang-Suen thinning of a ...xHxW boolean mask to curves one pixel wide (as ``bwmorph thin``
    in the BSDS benchmark, up to the algorithm's details). Pixels outside the image are background.
    """
    height, width = mask.shape[-2:]
    image = mask.reshape(-1, height, width).bool()
    while True:
        changed = False
        for triples in _ZHANG_SUEN_TRIPLES:
            padded = F.pad(image, (1, 1, 1, 1))
            neighbours = [padded[:, 1 + dr:1 + dr + height, 1 + dc:1 + dc + width]
                          for dr, dc in _NEIGHBOUR_OFFSETS]
            count = sum(n.to(torch.uint8) for n in neighbours)
            rises = sum((~neighbours[i] & neighbours[(i + 1) % 8]).to(torch.uint8)
                        for i in range(8))
            removable = image & (count >= 2) & (count <= 6) & (rises == 1)
            for first, second, third in triples:
                removable &= ~(neighbours[first] & neighbours[second] & neighbours[third])
            if removable.any():
                image = image & ~removable
                changed = True
        if not changed:
            return image.reshape(mask.shape)


class EdgeMeter(Meter):
    """Edge detection quality: the method's F1 and an approximate ODS boundary F-measure.

    ``f1`` (METHOD.md section 4.4): pixel confusion matrix of (prob > 0.5) against the ground
    truth, F1 = 2TP / (2TP + FP + FN) for the background and the edge class, reported as their
    mean. No distance tolerance.

    ``ods_f``/``ods_threshold``: for each threshold t, edges = prob >= t (thinned to one pixel
    when ``thin``); a predicted edge pixel is correct if a ground-truth edge pixel lies within
    ``tolerance_px`` (Chebyshev distance), a ground-truth edge pixel is recovered if a predicted
    one lies within the same distance. The four counts are summed over the dataset per threshold,
    precision and recall give F per threshold, and ODS is the best F over thresholds.

    This approximates the BSDS/MATLAB benchmark (``correspondPixels``), which differs in that it
    (1) matches predicted and ground-truth pixels one-to-one (bipartite assignment), whereas here
    one ground-truth pixel can justify several predicted ones, so thick, unthinned predictions
    score higher precision than there; (2) uses a Euclidean tolerance relative to the image
    diagonal (e.g. 0.0075·diagonal, 0.011 on NYUDv2) instead of a square window in pixels;
    (3) always thins the predictions after non-maximum suppression; and (4) interpolates the
    precision/recall curve between thresholds. Thinning costs many passes per threshold, which
    is why it is off by default.
    """

    main_metric = "f1"
    higher_is_better = True

    def __init__(self, thresholds: int | Sequence[float] = 33, tolerance_px: int = 2,
                 thin: bool = False) -> None:
        if isinstance(thresholds, int):
            # ``thresholds`` values evenly spaced strictly inside (0, 1), as the BSDS benchmark.
            thresholds = torch.linspace(0.0, 1.0, thresholds + 2)[1:-1].tolist()
        if tolerance_px < 0:
            raise ValueError("tolerance_px must be >= 0")
        self.thresholds = sorted(float(t) for t in thresholds)
        self.tolerance_px = tolerance_px
        self.thin = thin
        super().__init__()

    _PER_THRESHOLD = ("matched_pred", "total_pred", "matched_gt", "total_gt")

    def _empty_state(self) -> dict[str, Tensor]:
        state = {name: torch.zeros(len(self.thresholds), dtype=torch.int64)
                 for name in self._PER_THRESHOLD}
        state["confusion"] = torch.zeros(2, 2, dtype=torch.int64)
        return state

    def update(self, edge_prob: Tensor, target: Tensor) -> None:
        """``edge_prob``: BxHxW edge probability in [0, 1]; ``target``: BxHxW in {0, 1}."""
        if edge_prob.shape != target.shape:
            raise ValueError(f"prediction {tuple(edge_prob.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        truth = target.bool()
        decided = edge_prob > 0.5
        confusion = torch.bincount((truth.long() * 2 + decided.long()).reshape(-1), minlength=4)
        truth_zone = _dilate(truth, self.tolerance_px)
        if self.thin:
            counts = self._thinned_counts(edge_prob, truth, truth_zone)
        else:
            # Dilation commutes with thresholding (max-pool is monotone), so one max-pool of the
            # probabilities serves every threshold, and one histogram counts them all.
            prob_zone = _dilate_values(edge_prob, self.tolerance_px)
            thresholds = torch.tensor(self.thresholds, dtype=edge_prob.dtype,
                                      device=edge_prob.device)
            counts = {"matched_pred": _count_at_least(edge_prob[truth_zone], thresholds),
                      "total_pred": _count_at_least(edge_prob, thresholds),
                      "matched_gt": _count_at_least(prob_zone[truth], thresholds),
                      "total_gt": truth.sum().expand(len(self.thresholds))}
        self._accumulate(confusion=confusion.reshape(2, 2), **counts)

    def _thinned_counts(self, edge_prob: Tensor, truth: Tensor, truth_zone: Tensor
                        ) -> dict[str, Tensor]:
        counts: dict[str, list[Tensor]] = {name: [] for name in self._PER_THRESHOLD}
        for threshold in self.thresholds:
            edges = thin_edges(edge_prob >= threshold)
            counts["matched_pred"].append((edges & truth_zone).sum())
            counts["total_pred"].append(edges.sum())
            counts["matched_gt"].append((truth & _dilate(edges, self.tolerance_px)).sum())
            counts["total_gt"].append(truth.sum())
        return {name: torch.stack(values) for name, values in counts.items()}

    def compute(self) -> dict[str, float]:
        confusion = self._state["confusion"].double()
        hits = confusion.diagonal()
        class_f1 = 2.0 * hits / (confusion.sum(dim=0) + confusion.sum(dim=1))
        state = {name: value.double() for name, value in self._state.items()}
        precision = state["matched_pred"] / state["total_pred"].clamp_min(1)
        recall = state["matched_gt"] / state["total_gt"].clamp_min(1)
        f_measure = 2.0 * precision * recall / (precision + recall).clamp_min(1e-12)
        best = int(f_measure.argmax())
        return {
            "f1": class_f1.nanmean().item(),
            "ods_f": f_measure[best].item(),
            "ods_threshold": self.thresholds[best],
        }
