"""Training: components built from the config, a step-based loop, evaluation, checkpoints, resume.

The data order is a pure function of (seed, step): the sampler maps each step to dataset
indices and augmentation epochs, so a resumed run sees exactly the batches an uninterrupted
one would, and N DDP ranks split each global batch the way one process would see it whole.

SIGTERM and SIGINT stop a run cleanly (:mod:`heatmapnet.stopping`): the step under way completes,
``last.pt`` is written at it, and :class:`heatmapnet.stopping.StoppedBySignal` says how to resume;
``heatmapnet train`` holds its run directory's lock for the whole run (:mod:`heatmapnet.runlock`).
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

from .build import (RunRecords, build_codec, build_criterion, build_evaluator, build_mode, build_model,
                    build_optimizer, build_run_data, read_run_records)
from .checkpoint import CheckpointError, load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from .config import ConfigError, save_config
from .data.pipelines import collate_samples
from .distributed import DistInfo, barrier, cleanup_distributed, gather_objects, setup_distributed, values_over_ranks
from .errors import UserError
from .evaluation import primary_metric
from .finetune import FrozenPart
from .preflight import check_config, checked_run_records
from .resume import config_changes
from .runlock import holding_run_directory
from .stopping import StoppedBySignal, deferred_signals, requested, shelter_worker, signal_name


class NonFiniteLossError(UserError, RuntimeError):
    """Training stopped because the loss, the gradient or the weights stopped being finite (or
    sane): the command line reports its one line, which says where to resume from and how."""


def training_step(net: torch.nn.Module, criterion, optimizer: torch.optim.Optimizer, batch: dict,
                  clip_grad: float = 0.0, amp: bool = False, dist: Optional[DistInfo] = None) -> float:
    """One optimisation step on a collated batch: forward (bf16 autocast where ``amp``), the
    ``criterion`` (the mode's: e.g. :class:`heatmapnet.losses.HeatmapCriterion`) in float32 on
    the batch's ``criterion.target_keys``, backward, gradient clipping at ``clip_grad`` (0: none),
    the optimiser's step. Returns the loss, under DDP (``dist``) the mean of the ranks' losses;
    raises :class:`NonFiniteLossError` before any parameter changes if the loss of any rank, or
    the gradient norm, is not finite: every rank learns every rank's loss before the backward
    pass (whose gradient all-reduce would otherwise wait for a rank that stopped), so all ranks
    stop together with the same message. The trainer and ``heatmapnet bench`` both step through
    here."""
    device = next(net.parameters()).device
    images = batch["image"].to(device, non_blocking=True)
    targets = {key: batch[key].to(device, non_blocking=True) for key in criterion.target_keys}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        output = net(images)
    loss = criterion(output.float(), targets)
    losses = values_over_ranks(loss.detach(), dist or DistInfo())
    if not all(math.isfinite(value) for value in losses):
        raise NonFiniteLossError(describe_losses(losses))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad))
        if not math.isfinite(norm):
            raise NonFiniteLossError(f"the gradient norm is {norm}")
    optimizer.step()
    return sum(losses) / len(losses)


def describe_losses(losses) -> str:
    """The ranks' losses, in rank order, as the stop message gives them: "the loss is nan" for one
    process; "the loss is nan on rank 1 (of 2; rank 0: 0.0213)" under DDP."""
    if len(losses) == 1:
        return f"the loss is {losses[0]}"
    bad = ", ".join(f"{value} on rank {rank}" for rank, value in enumerate(losses) if not math.isfinite(value))
    good = ", ".join(f"rank {rank}: {value:.4g}" for rank, value in enumerate(losses) if math.isfinite(value))
    return f"the loss is {bad} (of {len(losses)}{'; ' + good if good else ''})"


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: The largest magnitude a checkpoint's weights may hold. Adam and AdamW move a parameter by at
#: most about 3 lr per step, so a sane run's parameters stay within a few units of where they
#: started; batch-norm running variances grow larger (6e3 after 1500 steps of the bottom-up
#: ablation), still six orders of magnitude below this. A diverging run passes it on its way to
#: inf (the issue's example held 1e28 one step before the loss was NaN).
WEIGHT_LIMIT = 1e10

#: A checkpoint's loss this many times the run's lowest is reported as possibly diverged.
DIVERGED_LOSS_RATIO = 100.0


def weight_problem(state: dict) -> Optional[str]:
    """What makes a model's ``state`` (a state dict) unfit to save, or None: its first floating
    tensor holding a value that is not finite or beyond :data:`WEIGHT_LIMIT` in magnitude."""
    named = [(name, tensor) for name, tensor in state.items() if tensor.is_floating_point() and tensor.numel()]
    if not named:
        return None
    peaks = torch.stack([tensor.detach().abs().amax().float() for _, tensor in named]).cpu()
    bad = (~(peaks <= WEIGHT_LIMIT)).nonzero()  # NaN fails the comparison too
    if not bad.numel():
        return None
    name, peak = named[int(bad[0, 0])][0], float(peaks[int(bad[0, 0])])
    if not math.isfinite(peak):
        return f"{name} holds {'nan' if math.isnan(peak) else 'inf'} values"
    return f"{name} holds values up to {peak:.3g}, beyond the {WEIGHT_LIMIT:g} no converging run reaches"


@dataclass(frozen=True)
class SavedCheckpoint:
    """A ``last.pt`` this trainer wrote or resumed from: where, its step, and the loss of that step
    (None where unknown: a resumed checkpoint does not record it)."""

    path: Path
    step: int
    loss: Optional[float] = None


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, config: DictConfig, out_dir, dist: Optional[DistInfo] = None, start_weights: bool = True,
                 records: Optional[RunRecords] = None):
        """``records``: both splits as the pre-flight passed them (:func:`heatmapnet.preflight.checked_run_records`,
        which ``heatmapnet train`` and ``heatmapnet ablate`` run first); without them the annotations
        are read here and no image is opened before a batch draws it. ``start_weights=False`` skips
        ``model.init_from`` (a resumed run takes its checkpoint's weights)."""
        self.config = config
        self.out_dir = Path(out_dir)
        self.dist = dist or DistInfo()
        train = config.train
        if train.threads:
            torch.set_num_threads(train.threads)
        records = read_run_records(config) if records is None else records
        seed_everything(train.seed)
        scheme = records.scheme
        self.codec = build_codec(config, scheme)
        self.data = build_run_data(config, self.codec, records)
        self.evaluator = build_evaluator(config, self.data.val_records, self.data.val_set, self.codec, scheme,
                                         self.dist)
        self.model = build_model(config, scheme)
        self.transfer = None  # what model.init_from loaded (heatmapnet.transfer.TransferReport)
        if config.model.init_from and start_weights:
            self.start_from(config.model.init_from)
        self.model.to(self.dist.device)
        self.criterion = build_criterion(config, scheme)
        self.optimizer = build_optimizer(config, self.model)
        self.frozen = FrozenPart.of(self.model, train.freeze, train.unfreeze_step)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, train.warmup_steps, train.steps))
        self.step = 0
        self.best = None  # {"name", "value", "step"}
        self.saved: Optional[SavedCheckpoint] = None  # the last.pt to resume from after a stop
        self.latest_loss: Optional[float] = None
        self.lowest_loss: Optional[float] = None
        self.net = self.model
        self._net_frozen = None  # whether self.net was wrapped with the frozen part frozen
        self.amp = bool(train.amp) and self.dist.device.type == "cuda"
        self.prepare_step()
        if self.dist.is_main and self.frozen.parameters:
            print(self.frozen.describe(), flush=True)

    # -- fine-tuning ---------------------------------------------------------------------------
    def start_from(self, path) -> None:
        """``model.init_from``: the model's weights from the checkpoint at ``path`` (any mode and
        scheme: :func:`heatmapnet.transfer.init_from_checkpoint`); rank 0 prints its one-line
        summary, and the file's SHA-256 goes into the run's config."""
        from .transfer import init_from_checkpoint

        mode = build_mode(self.config, self.data.scheme)
        self.transfer = init_from_checkpoint(self.model, mode, self.data.scheme, path,
                                             self.config.model.init_from_sha256)
        self.config.model.init_from_sha256 = self.transfer.sha256
        if self.dist.is_main:
            print(self.transfer.summary(), flush=True)

    def prepare_step(self) -> None:
        """Freeze or unfreeze ``train.freeze``'s part for the next step, and under DDP wrap the
        model anew where that changed which parameters take gradients (DDP reduces the gradients
        of the parameters that required one when it was built)."""
        frozen = self.frozen.apply(self.step)
        if self._net_frozen is not None and frozen != self._net_frozen and self.dist.is_main:
            print(f"step {self.step}: unfrozen {', '.join(self.frozen.prefixes)}", flush=True)
        if self.dist.enabled and frozen != self._net_frozen:
            device_ids = [self.dist.local_rank] if self.dist.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self._net_frozen = frozen

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"

    def save(self, path: Path) -> None:
        """Write a checkpoint of the current step, only from sane weights (:func:`weight_problem`,
        agreed over the ranks): otherwise :class:`NonFiniteLossError`, and ``path`` stays as it was."""
        problems = [problem for problem in gather_objects(weight_problem(self.model.state_dict()), self.dist)
                    if problem]
        if problems:
            raise NonFiniteLossError(f"training stopped at step {self.step}: {path} was not written, because "
                                     f"{problems[0]}. {self.resume_advice()}")
        if self.dist.is_main:
            save_checkpoint(path, config=OmegaConf.to_container(self.config), scheme=self.data.scheme,
                            model=self.model.state_dict(), step=self.step, best=self.best,
                            training={"optimizer": self.optimizer.state_dict(),
                                      "scheduler": self.scheduler.state_dict(), "rng": rng_states()})
        barrier(self.dist)
        if Path(path) == self.last_checkpoint:
            self.saved = SavedCheckpoint(Path(path), self.step, self.latest_loss)

    def stop_if_signalled(self) -> None:
        """A safe point of the loop (no step under way): where SIGTERM or SIGINT arrived on any rank
        (:mod:`heatmapnet.stopping`; under DDP one all-reduce per call, so that every rank stops at
        the same step), write ``last.pt`` at this step, unless it holds it already, and raise
        :class:`StoppedBySignal`."""
        signum = requested() or 0
        if self.dist.enabled:
            signum = int(max(values_over_ranks(torch.tensor(float(signum), device=self.dist.device), self.dist)))
        if not signum:
            return
        last = self.last_checkpoint
        if self.saved is None or self.saved.path != last or self.saved.step != self.step:
            self.save(last)
        raise StoppedBySignal(signum, f"stopped by {signal_name(signum)} at step {self.step} of "
                                      f"{self.config.train.steps}: {last} holds that step.", last, self.step)

    def resume_advice(self) -> str:
        """Where a stopped run can go on from, and with what: the last ``last.pt`` written (or
        resumed from), its step and loss, and a lower learning rate to resume with."""
        lower = f"train.lr={self.config.train.lr / 10:g}"
        if self.saved is None:
            return (f"No checkpoint of this run was written yet: run again with a lower learning rate "
                    f"(--set {lower}) or with train.clip_grad.")
        saved = self.saved
        left = " (left as it was)" if saved.path == self.last_checkpoint else ""
        loss = "" if saved.loss is None else f", whose loss was {saved.loss:.4g}"
        if saved.loss is not None and self.lowest_loss and saved.loss > DIVERGED_LOSS_RATIO * self.lowest_loss:
            loss += (f", {saved.loss / self.lowest_loss:.0f} times the run's lowest ({self.lowest_loss:.4g}): it may "
                     "have been diverging already")
        return (f"The last checkpoint is {saved.path}{left}, written at step {saved.step}{loss}. Resume from it with a "
                f"lower learning rate: --resume {saved.path} --set {lower} (or set train.clip_grad).")

    def resume(self, path) -> None:
        """Continue from the checkpoint at ``path`` with this trainer's config, which may differ from
        the checkpoint's only in :data:`heatmapnet.resume.RESUMABLE` settings (else ConfigError,
        before anything is loaded). Those are applied: the learning rate and weight decay in the
        optimiser (its restored state holds the checkpoint's) and its schedule, the rest where they
        are read; rank 0 prints one line of what changed."""
        checkpoint = load_checkpoint(path, map_location=self.dist.device)
        checkpoint.check_fits(self.data.scheme)
        missing = [key for key in ("optimizer", "scheduler", "rng") if key not in checkpoint.training]
        if missing:
            raise CheckpointError(f"{path}: holds no training state {missing}; it can be evaluated but not resumed")
        saved_model = checkpoint.config.get("model", {}) if isinstance(checkpoint.config, dict) else {}
        if saved_model.get("init_from"):  # where its weights started (checked by check_resume_with_init)
            self.config.model.init_from = saved_model["init_from"]
            self.config.model.init_from_sha256 = saved_model.get("init_from_sha256")
        changes = config_changes(checkpoint.config, OmegaConf.to_container(self.config), str(path))
        train = self.config.train
        if train.steps < checkpoint.step:
            raise ConfigError(f"{path}: holds step {checkpoint.step}, so train.steps={train.steps} would end before "
                              "it; set train.steps to at least that")
        checkpoint.load_weights(self.model)  # weights of another architecture: one line naming the file
        self.optimizer.load_state_dict(checkpoint.training["optimizer"])
        self.scheduler.load_state_dict(checkpoint.training["scheduler"])
        self.apply_learning_rate()
        self.step = checkpoint.step
        self.best = checkpoint.best
        restore_rng_states(checkpoint.training["rng"])
        if Path(path).resolve() == self.last_checkpoint.resolve():
            self.saved = SavedCheckpoint(self.last_checkpoint, checkpoint.step)
        if changes and self.dist.is_main:
            print(f"resuming {path} at step {checkpoint.step} with new settings: "
                  + ", ".join(str(change) for change in changes), flush=True)

    def apply_learning_rate(self) -> None:
        """Set the config's train.lr and train.weight_decay in the optimiser and its schedule, the
        rate at the scheduler's step being train.lr x :func:`learning_rate_factor` (as the
        schedule computes it: bit-identical where nothing changed)."""
        train = self.config.train
        factor = learning_rate_factor(self.scheduler.last_epoch, train.warmup_steps, train.steps)
        for group in self.optimizer.param_groups:  # each group keeps its train.lr_mult
            rate = train.lr * group.get("lr_mult", 1.0)
            group.update(initial_lr=rate, lr=rate * factor, weight_decay=train.weight_decay)
        self.scheduler.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, codec=None) -> dict:
        """The validation metrics, decoded with ``codec`` (default: the run's own, e.g. another
        ``refine`` to compare sub-pixel decoders on the same weights)."""
        return self.evaluator(self.model, codec)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop=None) -> dict:
        """Train to ``train.steps``, evaluating every ``train.eval_every`` steps and at the end.
        ``stop(step, result)``, if given, is asked after each periodic evaluation; True ends the
        run there (early stopping), that evaluation being the final one.

        SIGTERM or SIGINT (:mod:`heatmapnet.stopping`) let the step under way complete, with its
        periodic evaluation and checkpoint, then ``last.pt`` is written at that step and
        :class:`StoppedBySignal` raised: a ``--resume`` from it ends bit-identical to an
        uninterrupted run. A signal after the last step lets the run finish."""
        with deferred_signals():
            return self._run(stop)

    def _run(self, stop) -> dict:
        config, train = self.config, self.config.train
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out_dir / "config.yaml")
        log = _RunLog(self.out_dir, self.dist.is_main)
        sampler = StepBatchSampler(len(self.data.train_set), train.batch_size, self.dist, train.seed,
                                   self.step, train.steps)
        workers = config.data.num_workers
        loader = DataLoader(self.data.train_set, batch_sampler=sampler, num_workers=workers,
                            collate_fn=collate_samples, persistent_workers=False,
                            worker_init_fn=shelter_worker if workers else None)
        progress = log.progress(self.step, train.steps)
        started = time.perf_counter()
        window_start, window_images = time.perf_counter(), 0
        self.net.train()
        final = None
        try:  # the bar ends its line also when a stop raises, so the stop's message starts a line
            self.stop_if_signalled()
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
                    result = self.evaluate_and_keep_best(log)
                    window_start, window_images = time.perf_counter(), 0  # throughput excludes evaluation
                    if stop is not None and stop(self.step, result):
                        final = result
                        break
                if self.step % train.checkpoint_every == 0 and self.step < train.steps:
                    self.save(self.last_checkpoint)
                self.stop_if_signalled()
        finally:
            progress.close()
        if final is None:
            final = self.evaluate_and_keep_best(log)
        self.save(self.last_checkpoint)
        summary = {"final": final, "best": self.best, "steps": self.step,
                   "wall_time_s": round(time.perf_counter() - started, 1)}
        if self.dist.is_main:
            (self.out_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log.close()
        return summary

    def release_distributed(self) -> None:
        """Drop the DDP wrapper, which holds the process group, so that destroying the group frees
        it at once: left to the interpreter's shutdown (an error's traceback keeps the trainer),
        gloo's threads can abort the process (SIGABRT) after its message was printed."""
        self.net = self.model

    def train_step(self, batch: dict) -> float:
        self.prepare_step()
        try:
            value = training_step(self.net, self.criterion, self.optimizer, batch, self.config.train.clip_grad,
                                  self.amp, self.dist)
        except NonFiniteLossError as error:
            reason = str(error)
        else:
            reason = None
        if reason is not None:  # raised out here, the error keeps no frame of the step (its graph, the DDP net)
            raise NonFiniteLossError(f"training stopped at step {self.step + 1}: {reason}. Nothing was updated or "
                                     f"saved after the last finite step. {self.resume_advice()}")
        self.scheduler.step()
        self.latest_loss = value
        self.lowest_loss = value if self.lowest_loss is None else min(self.lowest_loss, value)
        return value

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


def check_resume_with_init(resume, init_from) -> None:
    """``--resume`` continues a run with its weights, optimiser and step; ``model.init_from``
    starts a new one from weights: given both, a :class:`ConfigError`, unless the checkpoint's own
    run was started from that file (its config records it: the run's config resumed as it was)."""
    saved = load_checkpoint(resume).config
    saved_model = saved.get("model", {}) if isinstance(saved, dict) else {}
    same = saved_model.get("init_from") == init_from
    if not same and saved_model.get("init_from_sha256") and Path(init_from).is_file():
        from .transfer import file_sha256

        same = file_sha256(init_from) == saved_model["init_from_sha256"]
    if not same:
        raise ConfigError(f"--resume {resume} continues a run (its weights, optimiser and step) and model.init_from "
                          f"{init_from} starts a new one from weights: use one of the two (the checkpoint's run "
                          f"started from {saved_model.get('init_from')!r})")


def train_from_config(config: DictConfig, out_dir, resume: Optional[str] = None) -> dict:
    """Train (under torchrun: with DDP) and return the summary written to ``metrics.json``.
    A config with a ``pretrain`` stage trains (or reuses) it first (:mod:`heatmapnet.stages`);
    the summary then says what the stage did and the wall time of both. The run holds the lock of
    ``out_dir`` throughout (:mod:`heatmapnet.runlock`; a second run there refuses in one line)."""
    dist = setup_distributed()
    try:
        with holding_run_directory(out_dir, dist):
            return _train_stages(config, out_dir, resume)
    finally:
        cleanup_distributed(dist)


def _train_stages(config: DictConfig, out_dir, resume: Optional[str]) -> dict:
    from .stages import run_stage, stage_config

    stage = stage_config(config, out_dir)
    if stage is not None:
        # the run's own names and options, before minutes of pretraining (its init_from comes next)
        check_config(OmegaConf.merge(config, {"model": {"init_from": None}}))
        stage = run_stage(config, stage, out_dir, train_from_config)
        if int(os.environ.get("RANK", "0")) == 0:
            print(stage.summary(), flush=True)
        summary = _train_run(config, out_dir, resume)
        summary["pretrain"] = stage.as_dict()
        summary["total_wall_time_s"] = round(summary["wall_time_s"] + stage.wall_time_s, 1)
        if int(os.environ.get("RANK", "0")) == 0:
            (Path(out_dir) / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary
    return _train_run(config, out_dir, resume)


def _train_run(config: DictConfig, out_dir, resume: Optional[str]) -> dict:
    if resume and config.model.init_from:
        check_resume_with_init(resume, config.model.init_from)
    dist = setup_distributed()
    trainer = None
    try:
        # config, every annotation and image, the run directory: checked before anything is built
        records = checked_run_records(config, out_dir, dist)
        trainer = Trainer(config, out_dir, dist, start_weights=not resume, records=records)
        if resume:
            trainer.resume(resume)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.release_distributed()
        cleanup_distributed(dist)
