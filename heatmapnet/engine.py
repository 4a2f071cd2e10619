"""Training: components built from the config, a step-based loop, evaluation, checkpoints, resume.

The data order is a pure function of (seed, step): the sampler maps each step to dataset
indices and augmentation epochs, so a resumed run sees exactly the batches an uninterrupted
one would, and N DDP ranks split each global batch the way one process would see it whole.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from .codec import HeatmapCodec
from .config import save_config
from .data.build import build_dataset, read_split, resolve_scheme
from .data.pipelines import collate_samples
from .distributed import DistInfo, barrier, cleanup_distributed, setup_distributed
from .evaluation import evaluate_predictions, predict_dataset, primary_metric
from .losses import LOGIT_LOSSES, build_loss
from .metadata import KeypointScheme
from .models import HeatmapModel, ModelConfig
from .targets import FixedSigma, OKSSigma, RadiusSigma


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the gradient stopped being finite."""


# ----------------------------------------------------------------------------------------------
# components from config sections
# ----------------------------------------------------------------------------------------------
def uses_logits(loss_section) -> bool:
    return loss_section.name in LOGIT_LOSSES


def build_codec(config: DictConfig, scheme: KeypointScheme) -> HeatmapCodec:
    """Targets follow the loss unless set: sigmoid losses get the size-adaptive radius target
    with an exact 1.0 peak, regression losses the fixed-sigma sub-pixel Gaussian."""
    target, logits = config.target, uses_logits(config.loss)
    policy = target.sigma_policy if target.sigma_policy != "auto" else ("radius" if logits else "fixed")
    if policy == "fixed":
        sigma_policy = FixedSigma(target.sigma)
    elif policy == "radius":
        sigma_policy = RadiusSigma(target.min_overlap, target.radius_formula)
    elif policy == "oks":
        sigma_policy = OKSSigma(tuple(float(s) for s in scheme.oks_sigmas), target.oks_scale)
    else:
        raise ValueError(f"unknown target.sigma_policy {policy!r}; choose auto, fixed, radius or oks")
    exact_peak = logits if target.exact_peak is None else bool(target.exact_peak)
    return HeatmapCodec(tuple(config.data.input_size), target.stride, sigma_policy, exact_peak,
                        config.eval.refine, config.eval.blur_sigma)


def build_loss_from_config(loss_section):
    if loss_section.name == "focal":
        return build_loss("focal", alpha=loss_section.alpha, beta=loss_section.beta)
    if loss_section.name == "mse":
        return build_loss("mse", convention=loss_section.mse_convention)
    return build_loss(loss_section.name)


def build_model_from_config(model_section, num_keypoints: int, logits: bool) -> HeatmapModel:
    return HeatmapModel(ModelConfig(backbone=model_section.backbone, head=model_section.head,
                                    head_channels=model_section.head_channels, head_norm=model_section.head_norm,
                                    num_keypoints=num_keypoints, pretrained_path=model_section.pretrained_path,
                                    sigmoid_prior=0.1 if logits else None))


def heatmap_loss(loss_fn, loss_name: str, output: torch.Tensor, batch: dict) -> torch.Tensor:
    """The loss of a batch. Top-down keypoints that are unlabelled or off the crop are ignored
    (their channel is masked for focal losses, weighted 0 for regression losses)."""
    target = batch["heatmaps"]
    weights = batch["keypoint_weights"]
    per_channel = weights if weights.dim() == 2 else None  # multi-instance maps mix instances
    if loss_name == "focal":
        ignore = None if per_channel is None else (per_channel == 0)[:, :, None, None].expand_as(output)
        return loss_fn(output, target, ignore)
    if loss_name == "retina_focal":
        return loss_fn(output, target, None if per_channel is None else per_channel[:, :, None, None])
    return loss_fn(output, target, per_channel)


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 0, then a cosine from 1 down to 0 at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class StepBatchSampler:
    """Per step, this rank's share of the global batch as (index, epoch) pairs: position p of
    the endless stream is item ``perm_e[p mod n]`` of epoch e = p // n, perm_e seeded by (seed, e)."""

    def __init__(self, dataset_size: int, global_batch: int, dist: DistInfo, seed: int, start_step: int,
                 total_steps: int):
        if global_batch % dist.world_size:
            raise ValueError(f"train.batch_size {global_batch} must divide by the {dist.world_size} ranks")
        if dataset_size == 0:
            raise ValueError("the training set is empty")
        self.size, self.global_batch, self.dist, self.seed = dataset_size, global_batch, dist, seed
        self.start_step, self.total_steps = start_step, total_steps
        self._permutations = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return self._permutations[epoch]

    def __len__(self) -> int:
        return self.total_steps - self.start_step

    def __iter__(self):
        share = self.global_batch // self.dist.world_size
        for step in range(self.start_step, self.total_steps):
            first = step * self.global_batch + self.dist.rank * share
            batch = []
            for position in range(first, first + share):
                epoch = position // self.size
                batch.append((int(self._permutation(epoch)[position % self.size]), epoch))
            yield batch


def _atomic_save(obj, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def _rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunData:
    scheme: KeypointScheme
    train_records: object
    val_records: object
    train_set: object
    val_set: object


def build_run_data(config: DictConfig, codec: HeatmapCodec, scheme: KeypointScheme) -> RunData:
    data = config.data
    train_records = read_split(data.train, data.skip_invalid, "data.train")
    val_records = read_split(data.val, data.skip_invalid, "data.val")
    return RunData(scheme, train_records, val_records,
                   build_dataset(data, data.train, train_records, codec, scheme, train=True, seed=config.train.seed),
                   build_dataset(data, data.val, val_records, codec, scheme, train=False, seed=config.train.seed))


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, config: DictConfig, out_dir, dist: Optional[DistInfo] = None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.dist = dist or DistInfo()
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        seed_everything(train.seed)
        self.logits = uses_logits(config.loss)
        scheme = resolve_scheme(config.data, config.data.train)
        self.codec = build_codec(config, scheme)
        self.data = build_run_data(config, self.codec, scheme)
        self.model = build_model_from_config(config.model, self.data.scheme.num_keypoints, self.logits)
        self.model.to(self.dist.device)
        self.loss_fn = build_loss_from_config(config.loss)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if train.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)
        elif train.optimizer == "adam":
            self.optimizer = torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay)
        else:
            raise ValueError(f"unknown train.optimizer {train.optimizer!r}; choose adam or adamw")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, train.warmup_steps, train.steps))
        self.step = 0
        self.best = None  # {"name", "value", "step"}
        self.net = self.model
        if self.dist.enabled:
            device_ids = [self.dist.local_rank] if self.dist.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.amp = bool(train.amp) and self.dist.device.type == "cuda"

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"

    def checkpoint_state(self) -> dict:
        return {"config": OmegaConf.to_container(self.config), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "best": self.best, "rng": _rng_states(),
                "scheme": self.data.scheme}

    def save(self, path: Path) -> None:
        if self.dist.is_main:
            _atomic_save(self.checkpoint_state(), path)
        barrier(self.dist)

    def resume(self, path) -> None:
        state = torch.load(path, map_location=self.dist.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.best = state["best"]
        _restore_rng_states(state["rng"])

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, codec: Optional[HeatmapCodec] = None) -> dict:
        """The validation metrics, decoded with ``codec`` (default: the run's own, e.g. another
        ``refine`` to compare sub-pixel decoders on the same weights)."""
        predictions = predict_dataset(self.model, self.data.val_set, codec or self.codec, self.logits, self.config.eval,
                                      self.dist, self.data.scheme.flip_permutation,
                                      max_peaks=self.config.eval.max_instances * self.data.scheme.num_keypoints)
        return evaluate_predictions(self.data.val_records, predictions, self.data.scheme, self.config.eval)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        config, train = self.config, self.config.train
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out_dir / "config.yaml")
        log = _RunLog(self.out_dir, self.dist.is_main)
        sampler = StepBatchSampler(len(self.data.train_set), train.batch_size, self.dist, train.seed,
                                   self.step, train.steps)
        workers = config.data.num_workers
        loader = DataLoader(self.data.train_set, batch_sampler=sampler, num_workers=workers,
                            collate_fn=collate_samples, persistent_workers=False)
        progress = log.progress(self.step, train.steps)
        started = time.perf_counter()
        window_start, window_images = time.perf_counter(), 0
        self.net.train()
        for batch in loader:
            loss = self.train_step(batch)
            self.step += 1
            window_images += batch["image"].shape[0] * self.dist.world_size
            if self.step % train.log_every == 0 or self.step == train.steps:
                elapsed = time.perf_counter() - window_start
                record = {"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0],
                          "images_per_s": window_images / max(elapsed, 1e-9)}
                log.scalars(record)
                progress.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}",
                                     img_s=f"{record['images_per_s']:.1f}")
                window_start, window_images = time.perf_counter(), 0
            progress.update(1)
            if self.step % train.eval_every == 0 and self.step < train.steps:
                self.evaluate_and_keep_best(log)
                window_start, window_images = time.perf_counter(), 0  # throughput excludes evaluation
            if self.step % train.checkpoint_every == 0 and self.step < train.steps:
                self.save(self.last_checkpoint)
        progress.close()
        final = self.evaluate_and_keep_best(log)
        self.save(self.last_checkpoint)
        summary = {"final": final, "best": self.best, "steps": self.step,
                   "wall_time_s": round(time.perf_counter() - started, 1)}
        if self.dist.is_main:
            (self.out_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log.close()
        return summary

    def train_step(self, batch: dict) -> float:
        device = self.dist.device
        images = batch["image"].to(device, non_blocking=True)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k in ("heatmaps", "keypoint_weights")}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            output = self.net(images)
        loss = heatmap_loss(self.loss_fn, self.config.loss.name, output.float(), batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            self._stop(f"the loss is {value}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.train.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip_grad)
            if not math.isfinite(float(norm)):
                self._stop(f"the gradient norm is {float(norm)}")
        self.optimizer.step()
        self.scheduler.step()
        return value

    def _stop(self, what: str) -> None:
        last = f"{self.last_checkpoint} (left as it was)" if self.last_checkpoint.exists() else "none was written yet"
        raise NonFiniteLossError(f"training stopped at step {self.step + 1}: {what}. Nothing was updated or "
                                 f"saved after the last finite step; last good checkpoint: {last}. Try a lower "
                                 f"train.lr or train.clip_grad.")

    def evaluate_and_keep_best(self, log) -> dict:
        result = self.evaluate()
        name, value, higher = primary_metric(result)
        log.scalars({"step": self.step, **{f"val/{k}": v for k, v in result.items() if isinstance(v, (int, float))}})
        if self.dist.is_main:
            print(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()
                                                    if isinstance(v, float)), flush=True)
        improved = self.best is None or (value > self.best["value"] if higher else value < self.best["value"])
        if improved:
            self.best = {"name": name, "value": value, "step": self.step}
            self.save(self.out_dir / "best.pt")
        return result


class _RunLog:
    """Rank 0's progress bar, metrics.jsonl and TensorBoard scalars; other ranks stay silent."""

    def __init__(self, out_dir: Path, active: bool):
        self.active = active
        self.file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8") if active else None
        self.writer = None
        if active:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def progress(self, start: int, total: int):
        from tqdm import tqdm

        return tqdm(total=total, initial=start, disable=not self.active, desc="train", unit="step",
                    mininterval=2.0, dynamic_ncols=True)

    def scalars(self, record: dict) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key if "/" in key else f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.active:
            self.file.close()
            self.writer.close()


def train_from_config(config: DictConfig, out_dir, resume: Optional[str] = None) -> dict:
    """Train (under torchrun: with DDP) and return the summary written to ``metrics.json``."""
    dist = setup_distributed()
    try:
        trainer = Trainer(config, out_dir, dist)
        if resume:
            trainer.resume(resume)
        return trainer.run()
    finally:
        cleanup_distributed(dist)
