"""Training: ``densemtl-train --config config/train/<name>.yaml [section.key=value ...]``.

Runs on one CPU/GPU, or on several GPUs (or CPU processes with gloo) under
``torchrun --nproc_per_node=N -m densemtl_core.train ...``. Writes to ``train.output_dir``:
the resolved config, a JSON-lines log, ``last.safetensors`` (+ resumable state) and
``best.safetensors``, and the validation metrics. An earlier run's files there are never
overwritten unless asked (``--overwrite``); ``--resume`` continues that run instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pickle
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from .checkpoint import (CheckpointError, ModelMetadata, load_training_state, load_weights,
                         read_metadata, save_checkpoint, save_training_state,
                         training_state_path)
from .config import (ConfigError, DataConfig, ExperimentConfig, ModelConfig, config_differences,
                     config_to_dict, load_config)
from .data import build_dataset, build_target_images
from .devices import DeviceError
from .distributed import DistContext, barrier, init_distributed, shutdown
from .evaluate import evaluate, main_metric_summary
from .strict_json import finite_json, write_json
from .losses import MultiTaskLoss
from .objectives import Objective, Outputs, Step
from .objectives.adversarial import AdversarialObjective
from .objectives.photometric import PhotometricObjective
from .objectives.self_training import SelfTrainingObjective
from .models import build_model, load_torchvision_weights
from .optim import build_optimizer, build_scheduler, check_state_shapes
from .pretrained import DEFAULT_MODEL
from .tasks import TASKS, delta_m, main_values
from .viz import plot_curves, save_png

CONFIG_FILE = "config.yaml"
LOG_FILE = "train_log.jsonl"
METRICS_FILE = "metrics_val.json"
CURVES_FILE = "curves.png"
LAST, BEST = "last", "best"
"""The two checkpoints of a run; only ``last`` has a training state to resume from."""
TARGET_SEED_OFFSET = 7919
"""Target images are drawn in an order seeded apart from the source's."""


def checkpoint_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}.safetensors"


def run_files(out_dir: Path) -> list[Path]:
    """Every file a run writes into ``out_dir``: what marks an earlier run there, and what
    ``overwrite`` removes (anything else in the folder is left alone)."""
    last = checkpoint_path(out_dir, LAST)
    return [*(out_dir / name for name in (CONFIG_FILE, LOG_FILE, METRICS_FILE, CURVES_FILE)),
            last, training_state_path(last), checkpoint_path(out_dir, BEST)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """RNG states in types ``torch.load(weights_only=True)`` accepts."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                             "numpy_pos": int(np.random.get_state()[2]),
                             "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32),
                         state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the model, optimiser and data of one run; ``fit`` trains to ``train.steps``."""

    def __init__(self, config: ExperimentConfig, ctx: DistContext) -> None:
        self.config = config
        self.ctx = ctx
        self.device = ctx.device
        self.out_dir = Path(config.train.output_dir)
        seed_everything(config.train.seed + ctx.rank)
        photometric = config.objectives.photometric
        if config.adapts() and ctx.enabled:
            raise ConfigError("adapting to a target trains on one process: the network runs on "
                              "source and target images before each backward pass, which "
                              "distributed data parallel does not allow")
        self.train_set = build_dataset(config.data, "train", train=True,
                                       sequence=photometric.enabled)
        self.target_set = build_target_images(config.target) if config.adapts() else None
        validation_data = config.target if config.train.validate_on == "target" else config.data
        self.val_set = build_dataset(validation_data, "val", train=False)
        self._check_classes(self.train_set)
        self._check_classes(self.val_set)
        if photometric.enabled and photometric.metric_scale == "odometry" and not getattr(
                self.train_set, "has_odometry", False):
            raise ConfigError("objectives.photometric.metric_scale=odometry, but the training data "
                              "has no odometry (give data.odometry_topic, or learn relative depth "
                              "with metric_scale=none and model.depth_units=relative)")
        self.model = build_initial_model(config.model).to(self.device)
        if config.train.init_from:
            initialise_from(self.model, config)
        self.objectives = torch.nn.ModuleDict(build_objectives(config, self.model)).to(
            self.device)
        groups, learning_rates = self.model.param_groups(), {}
        self.objective_optimizers: dict[str, tuple[torch.optim.Optimizer, Any]] = {}
        for name, objective in self.objectives.items():
            groups.update(objective.param_groups())
            learning_rates.update(objective.learning_rates())
            own = objective.own_optimizer()
            if own is not None:
                optimizer = build_optimizer({name: own[0]}, own[1])
                self.objective_optimizers[name] = (
                    optimizer, build_scheduler(optimizer, config.train.steps, own[1]))
        # Gradient clipping bounds the network and the networks objectives own (a pose
        # network), not learnt task weights.
        self.clipped_parameters = [parameter for name, params in groups.items()
                                   if name != "weighting" for parameter in params]
        self.optimizer = build_optimizer(groups, config.optim, learning_rates)
        self.scheduler = build_scheduler(self.optimizer, config.train.steps, config.optim)
        self.use_amp = config.train.amp and self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp
                                           and self.amp_dtype == torch.float16)
        self.cpu_bfloat16 = self.device.type == "cpu" and config.train.precision == "bfloat16"
        self.network: torch.nn.Module = self.model
        if ctx.enabled:
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step = 0
        self.best_score: float | None = None
        self.reference_metrics: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []

    def _check_classes(self, dataset: Dataset) -> None:
        expected = getattr(dataset, "num_classes", None)
        if "semseg" in self.config.model.tasks and expected not in (None,
                                                                    self.config.model.num_classes):
            raise ConfigError(f"model.num_classes={self.config.model.num_classes} but the "
                              f"{self.config.data.dataset} dataset has {expected} classes")

    # -- data -------------------------------------------------------------------------------
    def _epoch_order(self, dataset: Dataset, seed: int, epoch: int) -> list[int]:
        """This process's sample order of ``dataset`` for ``epoch``: a pure function of
        (seed, epoch, rank)."""
        if self.ctx.enabled:
            sampler = DistributedSampler(dataset, seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
            return list(sampler)
        generator = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(len(dataset), generator=generator).tolist()

    def _batches(self, dataset: Dataset, data: DataConfig, seed: int, name: str
                 ) -> Iterator[dict[str, torch.Tensor]]:
        """Endless stream of batches of ``dataset``, starting exactly where ``self.step`` left
        off (``name`` says which data in errors).

        Sample order and worker seeds come from generators of their own, never from the global
        RNG, so a resumed run sees the same batches and augmentations as an uninterrupted one.
        One loader serves every epoch, so ``data.num_workers`` worker processes start once,
        keep their rendered-scene caches and load ahead of the step across epoch ends.
        """
        batch_size = self.config.train.batch_size
        per_epoch = len(self._epoch_order(dataset, seed, 0)) // batch_size
        if per_epoch == 0:
            raise ConfigError(f"train.batch_size={batch_size} exceeds the {name} "
                              f"({len(dataset)} samples per process)")
        first_epoch, skip = divmod(self.step, per_epoch)

        def batch_indices() -> Iterator[list[int]]:
            for epoch in itertools.count(first_epoch):
                order = self._epoch_order(dataset, seed, epoch)
                start = skip if epoch == first_epoch else 0
                for batch in range(start, per_epoch):
                    yield order[batch * batch_size:(batch + 1) * batch_size]

        yield from DataLoader(dataset, batch_sampler=batch_indices(),
                              num_workers=data.num_workers,
                              pin_memory=self.device.type == "cuda",
                              generator=torch.Generator().manual_seed(seed + first_epoch))

    def _training_batches(self) -> Iterator[tuple[dict[str, torch.Tensor],
                                                   dict[str, torch.Tensor] | None]]:
        """(source batch, target batch or None) per step; the target images are drawn in an
        order of their own."""
        seed = self.config.train.seed
        source = self._batches(self.train_set, self.config.data, seed, "training set")
        if self.target_set is None:
            return ((batch, None) for batch in source)
        target = self._batches(self.target_set, self.config.target, seed + TARGET_SEED_OFFSET,
                               "target's training images")
        return zip(source, target)

    def _val_loader(self) -> DataLoader:
        sampler = (DistributedSampler(self.val_set, shuffle=False) if self.ctx.enabled else None)
        return DataLoader(self.val_set, batch_size=self.config.train.batch_size, sampler=sampler,
                          num_workers=self.config.data.num_workers,
                          generator=torch.Generator().manual_seed(0))

    # -- one step ---------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> Outputs:
        """The network's raw outputs on ``images``, in float32 whatever the autocast."""
        if self.use_amp:
            autocast = torch.autocast("cuda", dtype=self.amp_dtype)
        elif self.cpu_bfloat16:
            autocast = torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            autocast = nullcontext()
        with autocast:
            outputs = self.network(images)
        return {t: {s: o.float() for s, o in by_scale.items()} for t, by_scale in outputs.items()}

    def train_step(self, batch: dict[str, torch.Tensor],
                   target: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """One optimiser step on a source ``batch`` (and the ``target`` images when the run
        adapts); the objectives' logs."""
        def to_device(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(self.device, non_blocking=True) for k, v in values.items()}

        batch = to_device(batch)
        step = Step(batch, self.forward(batch["image"]), self.forward,
                    None if target is None else to_device(target))
        total, logs = self.objective_losses(step)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {logs}")
        for optimizer in self.optimizers():
            optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                self.clipped_parameters, self.config.optim.grad_clip))
        for optimizer in self.optimizers():
            self.scaler.step(optimizer)
        self.scaler.update()
        self.scheduler.step()
        for _, scheduler in self.objective_optimizers.values():
            scheduler.step()
        for objective in self.objectives.values():
            objective.after_step(self.model)
        return logs

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The network's optimiser and those objectives own (the discriminators')."""
        return [self.optimizer, *(optimizer for optimizer, _ in
                                  self.objective_optimizers.values())]

    def objective_losses(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        """The sum of every objective's loss at ``step``, and their logs with that sum as
        ``total``."""
        losses, logs = [], {}
        for objective in self.objectives.values():
            loss, values = objective.loss(step)
            losses.append(loss)
            logs.update(values)
        total = torch.stack(losses).sum()
        logs["total"] = float(total.detach())
        return total, logs

    # -- validation and checkpoints ---------------------------------------------------------
    def validate(self) -> dict[str, dict[str, float]]:
        metrics = evaluate(self.model, self._val_loader(), self.config.model, device=self.device,
                           ctx=self.ctx, progress=False)
        main = main_values(metrics)
        if self.reference_metrics is None:
            self.reference_metrics = main
        score = delta_m(main, self.reference_metrics,
                        {task: TASKS[task].higher_is_better for task in main})
        if self.ctx.is_main:
            record = {"step": self.step, "val": metrics, "score": score}
            self.history.append(record)
            self._log(record)
            tqdm.write(f"step {self.step}: {main_metric_summary(metrics)}")
            self._save(LAST, metrics)
            if self.best_score is None or score > self.best_score:
                self.best_score = score
                self._save(BEST, metrics)
        barrier(self.ctx)
        return metrics

    def metadata(self, metrics: dict[str, Any]) -> ModelMetadata:
        return ModelMetadata(config=self.config,
                             class_names=tuple(getattr(self.train_set, "class_names", ())),
                             class_colors=tuple(getattr(self.train_set, "class_colors", ())),
                             metrics={"val": metrics}, step=self.step)

    def _save(self, name: str, metrics: dict[str, Any]) -> None:
        path = checkpoint_path(self.out_dir, name)
        save_checkpoint(path, self.model, self.metadata(metrics))
        if name == LAST:
            save_training_state(path, {
                "step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "objectives": self.objectives.state_dict(),
                "objective_optimizers": {
                    name: {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
                    for name, (optimizer, scheduler) in self.objective_optimizers.items()},
                "rng": _rng_state(),
                "best_score": self.best_score, "reference": self.reference_metrics,
                "history": self.history})

    def resume(self, checkpoint: Path) -> None:
        """Continue the run saved at ``checkpoint`` (see :func:`check_resumable`); a training
        state that does not fit this run's optimiser, schedule or loss is a CheckpointError."""
        load_weights(checkpoint, self.model)
        state = load_training_state(checkpoint)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            check_state_shapes(self.optimizer)
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.objectives.load_state_dict(state["objectives"])
            for name, (optimizer, scheduler) in self.objective_optimizers.items():
                optimizer.load_state_dict(state["objective_optimizers"][name]["optimizer"])
                check_state_shapes(optimizer)
                scheduler.load_state_dict(state["objective_optimizers"][name]["scheduler"])
            _restore_rng(state["rng"])
            self.step = int(state["step"])
            self.best_score = state["best_score"]
            self.reference_metrics = state["reference"]
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{training_state_path(checkpoint)} does not fit this run: "
                                  f"{type(error).__name__}: {_first_line(error)}") from error
        self.history = list(state.get("history", []))  # absent in states of older versions
        if self.ctx.is_main:
            tqdm.write(f"resumed from {checkpoint} at step {self.step}")

    def _plot_curves(self) -> None:
        """``curves.png``: the total and each supervised task's training loss, and each task's
        validation main metric, over steps."""
        series: dict[str, list[tuple[float, float]]] = {}
        with (self.out_dir / LOG_FILE).open(encoding="utf-8") as handle:
            for record in map(json.loads, handle):
                if "train" in record:
                    series.setdefault("total loss", []).append(
                        (record["step"], record["train"]["total"]))
                for task in self.config.model.tasks:
                    if task in record.get("train", {}):
                        series.setdefault(f"{task} loss", []).append(
                            (record["step"], record["train"][task]))
                    if "val" in record:
                        key = TASKS[task].main_metric
                        series.setdefault(f"{task} val {key}", []).append(
                            (record["step"], record["val"][task][key]))
        save_png(self.out_dir / CURVES_FILE, plot_curves(series))

    def _log(self, record: dict[str, Any]) -> None:
        with (self.out_dir / LOG_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(finite_json(record), sort_keys=True, allow_nan=False) + "\n")

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict[str, dict[str, float]]:
        """Train from ``self.step`` to ``train.steps``; the final validation metrics. A run
        already at ``train.steps`` trains nothing and leaves its files as they are."""
        cfg = self.config.train
        if self.step >= cfg.steps:
            if self.ctx.is_main:
                tqdm.write(f"already at step {self.step} of train.steps={cfg.steps}: "
                           f"nothing to train")
            return self.history[-1]["val"] if self.history else {}
        if self.ctx.is_main:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ConfigError(f"train.output_dir: cannot create {self.out_dir}: "
                                  f"{error.strerror}") from error
            (self.out_dir / CONFIG_FILE).write_text(
                yaml.safe_dump(config_to_dict(self.config), sort_keys=False), encoding="utf-8")
        self.network.train()
        batches = self._training_batches()
        progress = tqdm(total=cfg.steps, initial=self.step, desc=self.config.name, unit="step",
                        disable=not self.ctx.is_main, dynamic_ncols=True)
        metrics: dict[str, dict[str, float]] = {}
        start = time.perf_counter()
        while self.step < cfg.steps:
            logs = self.train_step(*next(batches))
            self.step += 1
            progress.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                lrs = {f"lr_{g['name']}": g["lr"]
                       for optimizer in self.optimizers() for g in optimizer.param_groups}
                progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k != "grad_norm"})
                if self.ctx.is_main:
                    self._log({"step": self.step, "train": logs, **lrs,
                               "seconds": round(time.perf_counter() - start, 2)})
            if self.step == cfg.steps or (cfg.val_every and self.step % cfg.val_every == 0):
                metrics = self.validate()
            elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                if self.ctx.is_main:
                    self._save(LAST, self.history[-1]["val"] if self.history else {})
        progress.close()
        if self.ctx.is_main:
            self._plot_curves()
            write_json(self.out_dir / METRICS_FILE, {"format_version": 1, "step": self.step,
                                                     "metrics": metrics, "history": self.history})
        return metrics


def build_objectives(config: ExperimentConfig, network: torch.nn.Module
                     ) -> dict[str, Objective]:
    """The objectives of ``config``, by name: the supervised losses of the labelled tasks, the
    photometric objective when depth is learnt from video, and the adversarial and
    self-training objectives when the run adapts to a target (the teacher starts as a copy of
    ``network``)."""
    objectives: dict[str, Objective] = {}
    supervised = config.supervised_tasks()
    if supervised:
        objectives["supervised"] = MultiTaskLoss(supervised, config.loss)
    if config.objectives.photometric.enabled:
        objectives["photometric"] = PhotometricObjective(config.objectives.photometric,
                                                         config.model)
    if config.objectives.adversarial.enabled:
        objectives["adversarial"] = AdversarialObjective(config.objectives.adversarial,
                                                         config.model, supervised)
    if config.objectives.self_training.enabled:
        objectives["self_training"] = SelfTrainingObjective(
            config.objectives.self_training, config.model, config.loss, network)
    return objectives


def build_initial_model(cfg: ModelConfig) -> torch.nn.Module:
    """The network to train, its encoder read from ``model.pretrained`` when one is named; a
    file that is missing, unreadable or does not fit the encoder is a ConfigError naming the
    key (the file is only read here: checkpoints carry the trained weights)."""
    model = build_model(dataclasses.replace(cfg, pretrained=None))
    if cfg.pretrained:
        try:
            load_torchvision_weights(model.encoder, cfg.pretrained)
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError,
                SafetensorError) as error:
            raise ConfigError(f"model.pretrained: {_first_line(error)}") from error
    return model


def initialise_from(model: torch.nn.Module, config: ExperimentConfig) -> None:
    """Load the weights of ``train.init_from`` (``default``: the shipped model) into ``model``,
    whose settings must be the checkpoint's (``model.pretrained`` aside); a CheckpointError
    names the settings that differ."""
    path = DEFAULT_MODEL if config.train.init_from == "default" else Path(config.train.init_from)
    saved = read_metadata(path).config.model
    differing = {key: values for key, values in config_differences(saved, config.model,
                                                                    "model.").items()
                 if key != "model.pretrained"}
    if differing:
        shown = ", ".join(f"{key}={old!r} (this run: {new!r})"
                          for key, (old, new) in list(differing.items())[:3])
        raise CheckpointError(f"train.init_from: {path} is another network: {shown}; give this "
                              f"run the checkpoint's model settings")
    load_weights(path, model)


def _first_line(error: BaseException) -> str:
    """An error's first line: torch's own messages run over many lines."""
    return str(error).partition("\n")[0]


def resume_checkpoint(out_dir: Path, resume: Path | Literal["auto"] | None) -> Path | None:
    """The checkpoint a run continues from, or None when it starts afresh: ``auto`` takes
    ``<out_dir>/last.safetensors`` when there is one; a named checkpoint must exist. Either
    needs its training state (CheckpointError)."""
    if resume is None:
        return None
    checkpoint = checkpoint_path(out_dir, LAST) if resume == "auto" else Path(resume)
    if resume == "auto" and not checkpoint.exists():
        return None
    if not (checkpoint.is_file() and training_state_path(checkpoint).is_file()):
        raise CheckpointError(f"cannot resume: {checkpoint} or its training state "
                              f"{training_state_path(checkpoint)} is missing")
    return checkpoint


_SET_BY_CHECKPOINT = ("model.", "loss.weighting", "optim.optimizer")
"""Settings a resumed run keeps from its checkpoint: they shape the weights and the saved
optimiser and loss states (``model.pretrained`` aside: the checkpoint's weights replace it)."""


def check_resumable(checkpoint: Path, config: ExperimentConfig) -> None:
    """Refuse, before anything is built, a checkpoint of another set-up (CheckpointError) or
    one already past ``train.steps`` (ConfigError); nothing is written either way."""
    saved = read_metadata(checkpoint)
    differing = {key: values for key, values in config_differences(saved.config, config).items()
                 if key.startswith(_SET_BY_CHECKPOINT) and key != "model.pretrained"}
    if differing:
        shown = ", ".join(f"{key}={old!r} (this run: {new!r})"
                          for key, (old, new) in list(differing.items())[:3])
        more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
        raise CheckpointError(f"cannot resume from {checkpoint}: it was trained with {shown}"
                              f"{more}")
    if saved.step > config.train.steps:
        raise ConfigError(f"train.steps={config.train.steps} is below the {saved.step} steps "
                          f"{checkpoint} has already done; nothing was changed (give "
                          f"train.steps={saved.step} or more to continue)")


def earlier_run(out_dir: Path, *, overwrite: bool) -> list[Path]:
    """The files of an earlier run in ``out_dir`` (:func:`run_files`) that a new run would
    replace: a ConfigError when there are some, unless ``overwrite``."""
    earlier = [path for path in run_files(out_dir) if path.exists()]
    if earlier and not overwrite:
        last = checkpoint_path(out_dir, LAST)
        advice = ("continue it with --resume auto, or start over with --overwrite"
                  if last in earlier and training_state_path(last) in earlier else
                  "it left no checkpoint to continue from: start over with --overwrite")
        raise ConfigError(f"train.output_dir {out_dir} holds an earlier run "
                          f"({', '.join(path.name for path in earlier)}); {advice}")
    return earlier


def _remove(paths: list[Path]) -> None:
    """Delete an earlier run's files (``overwrite``), once the new run is known to start."""
    try:
        for path in paths:
            path.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"train.output_dir: cannot remove {error.filename}: "
                          f"{error.strerror}") from error


def train(config: ExperimentConfig, ctx: DistContext, *,
          resume: Path | Literal["auto"] | None = None, overwrite: bool = False
          ) -> dict[str, dict[str, float]]:
    """Train one run into ``train.output_dir``; the final validation metrics.

    ``resume``: a checkpoint with its training state, or ``"auto"`` for the output folder's
    ``last.safetensors`` when it exists. A run that does not continue the one in the output
    folder never mixes with an earlier run's files there: it stops with a ConfigError, or,
    with ``overwrite``, removes them first.
    """
    out_dir = Path(config.train.output_dir)
    checkpoint = resume_checkpoint(out_dir, resume)
    if checkpoint is not None:
        check_resumable(checkpoint, config)
    continuing = (checkpoint is not None
                  and checkpoint.resolve() == checkpoint_path(out_dir, LAST).resolve())
    replaced = [] if continuing else earlier_run(out_dir, overwrite=overwrite)
    trainer = Trainer(config, ctx)  # a set-up that cannot start stops here, deleting nothing
    if checkpoint is not None:
        trainer.resume(checkpoint)
    if ctx.is_main:
        _remove(replaced)
    barrier(ctx)  # no process writes before every one has looked at the folder
    return trainer.fit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densemtl-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML set-up (default: built-in defaults)")
    parser.add_argument("--resume", default=None, metavar="CKPT|auto",
                        help="continue from a checkpoint's training state; 'auto' takes "
                             "<output_dir>/last.safetensors if it exists")
    parser.add_argument("--overwrite", action="store_true",
                        help="when output_dir holds an earlier run that this one does not "
                             "continue, delete that run's files first (config.yaml, "
                             "train_log.jsonl, metrics_val.json, curves.png, the last and best "
                             "checkpoints and the training state; other files are kept). "
                             "Without it such a run is refused")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="e.g. train.steps=200 model.width=0.5 optim.lr=1e-3")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides may follow the options
    resume = args.resume if args.resume in (None, "auto") else Path(args.resume)
    try:
        config = load_config(args.config, args.overrides)
        ctx = init_distributed(config.train.device)
    except (ConfigError, DeviceError) as error:
        print(f"densemtl-train: {error}", file=sys.stderr)
        return 2
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    try:
        metrics = train(config, ctx, resume=resume, overwrite=args.overwrite)
        if ctx.is_main:
            print(f"final validation: {main_metric_summary(metrics)}")
            print(f"checkpoints in {config.train.output_dir}")
    except (ConfigError, CheckpointError) as error:
        print(f"densemtl-train: {error}", file=sys.stderr)
        return 2
    finally:
        shutdown(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
