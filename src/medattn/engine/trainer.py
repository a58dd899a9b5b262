"""The training engine: a run directory, epochs, validation, checkpoint selection, exact resume.

It knows nothing about any one method (a model computes its own named loss terms in
``forward_train``) and composes parts that live elsewhere: the data (``engine.data``), the batch
stream (``data.batches``), the model (``engine.run.build_model``), the criterion (``losses``), the
optimiser and schedule (``engine.optim``), one epoch (``engine.loop``) and the evaluation of a split
(``engine.evaluate``). Checkpoints are atomic and written every epoch; every epoch re-seeds its RNGs
from (seed, epoch), so a run stopped after epoch e and resumed gives the same numbers as a straight run.

Launched by torchrun, the same trainer runs on every rank (``engine.distributed``): the training step
goes through DDP, each rank trains on its slice of every global batch, predictions are gathered from
all ranks before any metric, and only rank 0 writes into the run directory.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..config import Config
from ..data.batches import TrainBatches, epoch_seed
from ..data.transforms import BatchAugment
from ..errors import RunError, OutputExistsError
from ..losses.classification import build_criterion
from ..metrics.summary import compute_metrics, default_select_metric, metric_value
from ..models.base import LossContext
from ..files import atomic_write_text, remove_stale_temporaries
from ..data.split_files import write_splits_json
from .checkpoint import restore_training_state, save_checkpoint
from .data import RunData, class_weights, read_run_data, read_split
from .distributed import Distributed, check_replicas, config_fingerprint, per_rank_batch, predict_sharded, training_module
from .evaluate import evaluate_split, write_split_results
from .inference import predict_proba
from .loop import train_one_epoch
from .optim import WarmupCosine, build_optimizer
from .precision import Precision, auto_needs_measuring, faster_cpu_precision
from .run import build_model, check_config, write_run_files


@dataclass
class EpochLog:
    epoch: int
    train: dict[str, float]
    val: dict
    lr: float
    seconds: float
    data_wait_seconds: float
    selected: bool = False
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"epoch": self.epoch, "train": self.train, "val": self.val, "lr": self.lr,
                           "seconds": round(self.seconds, 3), "data_wait_seconds": round(self.data_wait_seconds, 3),
                           "selected": self.selected, **self.extra}, default=float)


class Trainer:
    """Train the model a config describes into ``run_dir``.

    ``fit()`` returns the best validation metrics; ``run_dir`` then holds the run (see
    ``medattn.engine.run``); ``evaluate_splits()`` scores the best weights on the test splits.
    """

    def __init__(self, config: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print, data: RunData | None = None):
        self.cfg, self.run_dir, self.resume = config, Path(run_dir), resume
        t = config.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.dist, self.device = Distributed.from_env(t.device, t.dist_timeout)  # one process without torchrun
        self.progress, self.log = progress and self.dist.is_main, log if self.dist.is_main else (lambda s: None)
        self.dist.check_same(config_fingerprint(config.to_dict()), "config")
        self._check_run_dir()
        check_config(config)
        per_rank_batch(t.batch_size, self.dist.world_size, t.accumulate)
        if not self.dist.is_main:
            self.dist.barrier()  # rank 0 reads first: a decode cache is built once, then read by all
        self.data = data or read_run_data(config)  # validates every split the run reads before any training
        if self.dist.is_main:
            self.dist.barrier()
        self.task, self.class_names = self.data.task, self.data.class_names
        self.precision = Precision.resolve(t.precision, self.device)
        self.batches = TrainBatches(self.data.train, t.batch_size, config.seed, BatchAugment(**vars(config.augment)),
                                    t.sampler, self.data.unlabeled, t.unlabeled_ratio, t.max_steps_per_epoch,
                                    rank=self.dist.rank, world_size=self.dist.world_size, device=self.device)
        torch.manual_seed(config.seed)
        self.model = build_model(config, len(self.class_names), self.task).to(self.device)
        self.channels_last = t.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Before the optimiser: SyncBatchNorm replaces the BatchNorm layers (and their parameters).
        self.train_step = training_module(self.model, self.dist, self.device, t.sync_bn)
        self.class_weights = class_weights(self.data.train).to(self.device)  # (K,), once: not per step
        self.criterion = build_criterion(config.loss.name, self.task, self.class_weights, **config.loss.options)
        self.optimizer = build_optimizer(self.model, t)
        self.schedule = WarmupCosine.for_run(t, self.batches.steps_per_epoch)
        if auto_needs_measuring(t.precision, self.device):
            self.precision = self._choose_cpu_precision()
        self.scaler = self.precision.grad_scaler()
        self.select_metric = default_select_metric(self.task) if t.select_metric == "auto" else t.select_metric

    def _choose_cpu_precision(self) -> Precision:
        """``precision: auto`` on a CPU with bf16 flags: what the run used before (resume), else the
        faster of bf16 and fp32 for this model and batch, timed on a copy (``faster_cpu_precision``);
        under DDP rank 0's choice."""
        last = self.run_dir / "last.json"
        if self.resume and last.is_file() and "precision" in (meta := json.loads(last.read_text())):
            return Precision.resolve(meta["precision"], self.device)
        probe = copy.deepcopy(self.model).train()
        x, y = self.batches.first_batch()
        x = x.to(self.device).contiguous(memory_format=torch.channels_last) if self.channels_last else x.to(self.device)
        ctx = LossContext(criterion=self.criterion, epoch=0, num_epochs=self.cfg.train.epochs,
                          class_weights=self.class_weights)

        def step(precision: Precision) -> None:
            with precision.autocast():
                loss = probe.forward_train(x, y.to(self.device), ctx).losses["total"]
            loss.backward()
            probe.zero_grad(set_to_none=True)

        chosen, seconds = faster_cpu_precision(step, self.device)
        name = self.dist.all_objects(chosen.name)[0]
        self.log(f"precision auto: one training step takes {seconds['bf16']:.3f} s in bf16, {seconds['fp32']:.3f} s "
                 f"in fp32 on this CPU -> {name}")
        return Precision.resolve(name, self.device)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch

    def _check_run_dir(self) -> None:
        exists = (self.run_dir / "last.safetensors").exists() or (self.run_dir / "metrics.jsonl").exists()
        if exists and not self.resume:
            raise OutputExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose "
                                  f"another --out (nothing was overwritten)")
        if self.resume and not (self.run_dir / "last.safetensors").exists():
            raise RunError(f"--resume: {self.run_dir} has no last.safetensors to resume from "
                           f"(start a new run without --resume)")

    def validate(self) -> dict:
        val = self.data.val
        probs = predict_sharded(self.dist, len(val), lambda part: predict_proba(
            self.model, val.images[part], self.cfg.train.eval_batch_size, task=self.task, precision=self.precision,
            channels_last=self.channels_last))
        return compute_metrics(val.targets, probs, self.class_names, self.task)

    def _save_state(self, epoch: int, step: int, best: float, best_epoch: int, bad_epochs: int) -> None:
        meta = {"kind": "training_state", "epoch": epoch, "step": step, "best": best, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "select_metric": self.select_metric, "precision": self.precision.name}
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "last", self.model, meta, optimizer=self.optimizer)

    def _restore(self, log_path: Path) -> tuple[int, int, float, int, int]:
        """Load ``last``; keep the log lines of the epochs it covers (a kill may have left more)."""
        meta, _ = restore_training_state(self.run_dir / "last", self.model, self.optimizer)
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= meta["epoch"]]
        if self.dist.is_main:
            atomic_write_text(log_path, "".join(ln + "\n" for ln in kept))
        self.log(f"resuming {self.run_dir} after epoch {meta['epoch'] + 1}")
        return meta["epoch"] + 1, meta["step"], meta["best"], meta["best_epoch"], meta["bad_epochs"]

    def fit(self, stop_after: int | None = None) -> dict:
        """Train; returns {"best_epoch", "best_value", "select_metric", "epochs_run", "seconds"}.

        ``stop_after``: leave after that many epochs of this call, as if the process were killed
        (the schedule still plans for ``train.epochs``; continue with ``resume=True``).
        """
        t, main = self.cfg.train, self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for p in remove_stale_temporaries(self.run_dir):
                self.log(f"removed {p.name}, a file half-written by an interrupted run")
        log_path = self.run_dir / "metrics.jsonl"
        if self.resume:
            start_epoch, step, best, best_epoch, bad_epochs = self._restore(log_path)
        else:
            start_epoch, step, best, best_epoch, bad_epochs = 0, 0, -math.inf, -1, 0
        if main:
            write_run_files(self.run_dir, self.cfg, self.class_names, self.task)  # on resume: with its safe changes
            write_splits_json(self.data.train, self.run_dir / "splits.json")  # readers that make their own split
            if self.dist.enabled:
                atomic_write_text(self.run_dir / "distributed.json", json.dumps(self.dist.to_json(), indent=1))
        verify = os.environ.get("MEDATTN_DDP_VERIFY") == "1" and self.dist.enabled
        after_step = (lambda s: check_replicas(self.dist, self.model, f"after step {s}")) if verify else None
        started = time.perf_counter()
        epoch = start_epoch - 1
        for epoch in range(start_epoch, t.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(epoch_seed(self.cfg.seed, epoch) + 1)
            batches = self.batches.epoch(epoch)
            ctx = LossContext(criterion=self.criterion, epoch=epoch, num_epochs=t.epochs, class_weights=self.class_weights)
            terms, step = train_one_epoch(
                self.train_step, self.optimizer, batches, ctx, self.schedule, step, device=self.device,
                precision=self.precision, scaler=self.scaler, grad_clip=t.grad_clip, channels_last=self.channels_last,
                accumulate=t.accumulate, after_step=after_step, total=self.steps_per_epoch,
                desc=f"epoch {epoch + 1}/{t.epochs}", progress=self.progress)
            if self.dist.enabled:  # the log shows the mean over ranks; the weights must agree
                check_replicas(self.dist, self.model, f"after epoch {epoch + 1}")
                every = self.dist.all_objects(terms)
                terms = {k: sum(r[k] for r in every) / len(every) for k in terms}
            val = self.validate()
            value = metric_value(val, self.select_metric)
            improved = value > best
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                if main:
                    save_checkpoint(self.run_dir / "best", self.model, {"kind": "weights", "epoch": epoch,
                                                                        "select_metric": self.select_metric, "value": value})
            else:
                bad_epochs += 1
            self._save_state(epoch, step, best, best_epoch, bad_epochs)
            seconds = time.perf_counter() - t0
            entry = EpochLog(epoch, terms, val, self.optimizer.param_groups[0]["lr"], seconds, batches.wait_seconds,
                             improved)
            if main:
                with open(log_path, "a") as f:
                    f.write(entry.to_json() + "\n")
            self.log(f"epoch {epoch + 1}/{t.epochs}  {' '.join(f'{k}={v:.4f}' for k, v in terms.items())}  "
                     f"val {self.select_metric}={value:.4f}{' *' if improved else ''}  "
                     f"({seconds:.1f}s, data wait {batches.wait_seconds:.1f}s)")
            if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
                break
            if t.early_stopping_patience is not None and bad_epochs >= t.early_stopping_patience:
                self.log(f"early stopping: no improvement of {self.select_metric} for {t.early_stopping_patience} epochs")
                break
        return {"best_epoch": best_epoch, "best_value": best, "select_metric": self.select_metric,
                "epochs_run": epoch + 1, "seconds": time.perf_counter() - started}

    def evaluate_splits(self, splits: list[str] | None = None, n_boot: int = 0) -> dict[str, dict]:
        """Load the best weights and score every test split (``evaluate_split``); writes
        ``eval_<split>.json`` and ``predictions_<split>.csv`` into the run directory."""
        self.dist.barrier()  # rank 0 has written best.safetensors
        restore_training_state(self.run_dir / "best", self.model)
        results = {}
        for split in splits if splits is not None else self.cfg.data.test_splits:
            dataset = self.data.tests.get(split) or read_split(self.cfg, split)
            metrics, probs = evaluate_split(
                self.model, dataset, self.class_names, self.task, precision=self.precision,
                batch_size=self.cfg.train.eval_batch_size, channels_last=self.channels_last, n_boot=n_boot,
                threshold_data=self.data.val,
                threshold_split=self.cfg.data.val_split, progress=f"eval {split}" if self.progress else False,
                shards=self.dist)
            if self.dist.is_main:
                write_split_results(self.run_dir / f"eval_{split}.json", self.run_dir / f"predictions_{split}.csv",
                                    dataset, probs, self.class_names, metrics)
            results[split] = metrics
        return results
