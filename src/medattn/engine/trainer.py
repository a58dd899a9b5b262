"""The training engine. It knows nothing about any one method: a model computes its own named loss
terms in ``forward_train`` and the trainer only back-propagates ``losses['total']`` and logs the rest.

- bf16 autocast on CPUs with AMX/AVX512-BF16, AMP on CUDA, channels_last (all switchable);
- AdamW with linear warm-up and cosine decay, computed from the global step (no scheduler state);
- class imbalance: class-weighted losses, balanced sampler;
- best-checkpoint selection on a validation metric, early stopping;
- atomic checkpoints every epoch and exact ``--resume``: every epoch re-seeds its RNGs from
  (seed, epoch), so a run stopped after epoch e and resumed gives the same numbers as a straight run.
"""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.dataset import UNLABELED
from ..data.transforms import BatchAugment, to_float_batch
from ..losses.classification import build_criterion
from ..models.base import LossContext
from .checkpoint import atomic_write_text, restore_training_state, save_checkpoint
from .data import RunData, class_weights, read_run_data
from ..metrics.summary import compute_metrics, default_select_metric, metric_value
from .inference import predict_proba
from .precision import Precision, resolve_device
from .run import build_model, write_run_files


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63 - 1)


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
    ``medattn.engine.run``).
    """

    def __init__(self, config: dict, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print, data: RunData | None = None):
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = progress
        self.log = log
        t = config["train"]
        if t.get("num_threads"):
            torch.set_num_threads(int(t["num_threads"]))
        if t.get("deterministic"):
            torch.use_deterministic_algorithms(True, warn_only=True)
        self._check_run_dir()
        self.data = data or read_run_data(config)  # validates all inputs before any training
        self.task = self.data.task
        self.class_names = self.data.class_names
        self.device = resolve_device(t.get("device", "auto"))
        self.precision = Precision.resolve(t.get("precision", "auto"), self.device)
        torch.manual_seed(int(config["seed"]))
        self.model = build_model(config, len(self.class_names), self.task).to(self.device)
        self.channels_last = bool(t.get("channels_last", True))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.class_weights = class_weights(self.data.train).to(self.device)  # (K,), once: not per step
        loss = config["loss"]
        self.criterion = build_criterion(loss["name"], self.task, self.class_weights, **(loss.get("options") or {}))
        self.optimizer = self._optimizer()
        self.scaler = self.precision.grad_scaler()
        self.augment = BatchAugment(**config["augment"])
        self.sampler = t.get("sampler", "random")
        if self.sampler not in ("random", "balanced"):  # checked here, before any training
            raise ValueError(f"unknown sampler {self.sampler!r}: random or balanced")
        if self.sampler == "balanced" and self.task != "multiclass":  # one class per image is needed to balance
            raise ValueError("train.sampler=balanced needs a multi-class task; use weighted losses "
                             "(e.g. loss.name=bce with pos_weight) for multi-label data")
        n = len(self.data.train)
        bs = int(t["batch_size"])
        self.steps_per_epoch = max(1, n // bs) if n >= bs else 1
        if t.get("max_steps_per_epoch"):
            self.steps_per_epoch = min(self.steps_per_epoch, int(t["max_steps_per_epoch"]))
        self.select_metric = t.get("select_metric", "auto")
        if self.select_metric == "auto":
            self.select_metric = default_select_metric(self.task)

    # ----------------------------------------------------------------- setup
    def _check_run_dir(self) -> None:
        exists = (self.run_dir / "last.safetensors").exists() or (self.run_dir / "metrics.jsonl").exists()
        if exists and not self.resume:
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose "
                                  f"another --out (nothing was overwritten)")
        if self.resume and not (self.run_dir / "last.safetensors").exists():
            raise FileNotFoundError(f"--resume: {self.run_dir} has no last.safetensors to resume from")

    def _optimizer(self) -> torch.optim.Optimizer:
        t = self.cfg["train"]
        backbone_ids = {id(p) for p in self.model.param_groups()["backbone"]}
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim <= 1 or name.endswith(".bias")
            groups.setdefault((id(p) in backbone_ids, no_decay), []).append(p)
        param_groups = []
        for (is_backbone, no_decay), params in sorted(groups.items()):
            scale = float(t.get("backbone_lr_scale", 1.0)) if is_backbone else 1.0
            param_groups.append({"params": params, "lr": float(t["lr"]) * scale, "base_lr": float(t["lr"]) * scale,
                                 "weight_decay": 0.0 if no_decay else float(t["weight_decay"])})
        name = t.get("optimizer", "adamw").lower()
        if name == "adamw":
            return torch.optim.AdamW(param_groups)
        if name == "adam":
            return torch.optim.Adam(param_groups)
        if name == "sgd":
            return torch.optim.SGD(param_groups, momentum=0.9, nesterov=True)
        raise ValueError(f"unknown optimizer {name!r}: adamw, adam or sgd")

    def lr_factor(self, step: int) -> float:
        """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at the last step."""
        t = self.cfg["train"]
        total = max(1, int(t["epochs"]) * self.steps_per_epoch)
        warm = int(round(float(t.get("warmup_epochs", 0)) * self.steps_per_epoch))
        if warm and step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        floor = float(t.get("min_lr_ratio", 0.0))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    # ----------------------------------------------------------------- batches
    def _epoch_order(self, g: torch.Generator) -> np.ndarray:
        train = self.data.train
        n = len(train)
        if self.sampler == "balanced":
            counts = train.class_counts()
            w = np.where(train.labeled, 1.0 / np.maximum(counts[np.maximum(train.targets, 0)], 1), 0.0)
            return torch.multinomial(torch.tensor(w), n, replacement=True, generator=g).numpy()
        return torch.randperm(n, generator=g).numpy()

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented batches of one epoch, prepared one step ahead in a background thread."""
        g = torch.Generator().manual_seed(epoch_seed(self.cfg["seed"], epoch))
        order = self._epoch_order(g)
        bs = int(self.cfg["train"]["batch_size"])
        unl = self.data.unlabeled
        n_unl = int(round(bs * float(self.cfg["train"].get("unlabeled_ratio", 0.5)))) if unl is not None else 0
        train = self.data.train

        def make(step: int):
            idx = order[step * bs:(step + 1) * bs]
            images, targets = train.images[idx], train.targets[idx]
            if n_unl:
                uidx = torch.randint(0, len(unl), (n_unl,), generator=g).numpy()
                images = np.concatenate([images, unl.images[uidx]])
                fill = np.full((n_unl, *targets.shape[1:]), np.nan if self.task == "multilabel" else UNLABELED, targets.dtype)
                targets = np.concatenate([targets, fill])
            x = self.augment(to_float_batch(images), g)
            return x, torch.as_tensor(targets)

        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def producer():
            try:
                for step in range(self.steps_per_epoch):
                    if stop.is_set():
                        return
                    q.put(make(step))
                q.put(None)
            except BaseException as err:  # surface errors in the main thread
                q.put(err)

        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                self._data_wait += time.perf_counter() - t0
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)

    # ----------------------------------------------------------------- loop
    def train_epoch(self, epoch: int, step: int) -> tuple[dict[str, float], int]:
        self.model.train()
        torch.manual_seed(epoch_seed(self.cfg["seed"], epoch) + 1)
        sums: dict[str, float] = {}
        count = 0
        t = self.cfg["train"]
        bar = tqdm(self._batches(epoch), total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{t['epochs']}",
                   disable=not self.progress, leave=False, unit="step")
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            factor = self.lr_factor(step)
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            ctx = LossContext(criterion=self.criterion, epoch=epoch, num_epochs=int(t["epochs"]),
                              class_weights=self.class_weights)
            with self.precision.autocast():
                out = self.model.forward_train(x, y, ctx)
            loss = out.losses["total"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, step {step}: "
                                         f"terms {({k: float(v) for k, v in out.losses.items()})}")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if t.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(t["grad_clip"]))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            step += 1
            count += 1
            for k, v in out.losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{sums['total'] / count:.4f}")
        return {k: v / max(count, 1) for k, v in sums.items()}, step

    def validate(self) -> dict:
        probs = predict_proba(self.model, self.data.val, int(self.cfg["train"]["eval_batch_size"]), task=self.task,
                              precision=self.precision, channels_last=self.channels_last)
        return compute_metrics(self.data.val.targets, probs, self.class_names, self.task)

    def _save_state(self, epoch: int, step: int, best: float, best_epoch: int, bad_epochs: int) -> None:
        meta = {"kind": "training_state", "epoch": epoch, "step": step, "best": best, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "select_metric": self.select_metric, "precision": self.precision.name}
        save_checkpoint(self.run_dir / "last", self.model, meta, optimizer=self.optimizer)

    def fit(self, stop_after: int | None = None) -> dict:
        """Train; returns {"best_epoch", "best_value", "select_metric", "epochs_run", "seconds"}.

        ``stop_after``: leave after that many epochs of this call, as if the process were killed
        (the schedule still plans for ``train.epochs``; continue with ``resume=True``).
        """
        t = self.cfg["train"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start_epoch, step, best, best_epoch, bad_epochs = 0, 0, -math.inf, -1, 0
        log_path = self.run_dir / "metrics.jsonl"
        if self.resume:
            meta, _ = restore_training_state(self.run_dir / "last", self.model, self.optimizer)
            start_epoch, step = meta["epoch"] + 1, meta["step"]
            best, best_epoch, bad_epochs = meta["best"], meta["best_epoch"], meta["bad_epochs"]
            # Keep the log lines of the epochs that the checkpoint covers (a kill may have left more).
            lines = log_path.read_text().splitlines() if log_path.exists() else []
            kept = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= meta["epoch"]]
            atomic_write_text(log_path, "".join(ln + "\n" for ln in kept))
            self.log(f"resuming {self.run_dir} after epoch {meta['epoch'] + 1}")
        else:
            write_run_files(self.run_dir, self.cfg, self.class_names, self.task)
        started = time.perf_counter()
        patience = t.get("early_stopping_patience")
        epoch = start_epoch - 1
        for epoch in range(start_epoch, int(t["epochs"])):
            t0 = time.perf_counter()
            self._data_wait = 0.0
            train_terms, step = self.train_epoch(epoch, step)
            val = self.validate()
            value = metric_value(val, self.select_metric)
            improved = value > best
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                save_checkpoint(self.run_dir / "best", self.model,
                                {"kind": "weights", "epoch": epoch, "select_metric": self.select_metric, "value": value})
            else:
                bad_epochs += 1
            self._save_state(epoch, step, best, best_epoch, bad_epochs)
            seconds = time.perf_counter() - t0
            entry = EpochLog(epoch, train_terms, val, self.optimizer.param_groups[0]["lr"], seconds, self._data_wait, improved)
            with open(log_path, "a") as f:
                f.write(entry.to_json() + "\n")
            terms = " ".join(f"{k}={v:.4f}" for k, v in train_terms.items())
            self.log(f"epoch {epoch + 1}/{t['epochs']}  {terms}  val {self.select_metric}={value:.4f}"
                     f"{' *' if improved else ''}  ({seconds:.1f}s, data wait {self._data_wait:.1f}s)")
            if stop_after is not None and epoch + 1 - start_epoch >= stop_after:
                break
            if patience is not None and bad_epochs >= int(patience):
                self.log(f"early stopping: no improvement of {self.select_metric} for {patience} epochs")
                break
        return {"best_epoch": best_epoch, "best_value": best, "select_metric": self.select_metric,
                "epochs_run": epoch + 1, "seconds": time.perf_counter() - started}

    def evaluate_splits(self, splits: list[str] | None = None, n_boot: int = 0) -> dict[str, dict]:
        """Load the best weights and score every test split; writes predictions and eval JSON."""
        from .evaluate import write_predictions_csv
        from ..metrics.summary import with_confidence_intervals
        from .data import read_split

        restore_training_state(self.run_dir / "best", self.model)
        results = {}
        for split in splits if splits is not None else self.cfg["data"]["test_splits"]:
            dataset = read_split(self.cfg, split)
            probs = predict_proba(self.model, dataset, int(self.cfg["train"]["eval_batch_size"]), task=self.task,
                                  precision=self.precision, channels_last=self.channels_last, progress=f"eval {split}" if self.progress else False)
            metrics = compute_metrics(dataset.targets, probs, self.class_names, self.task)
            if n_boot:
                metrics = with_confidence_intervals(metrics, dataset.targets, probs, self.class_names, self.task, n_boot=n_boot)
            write_predictions_csv(self.run_dir / f"predictions_{split}.csv", dataset, probs, self.class_names)
            atomic_write_text(self.run_dir / f"eval_{split}.json", json.dumps(metrics, indent=1, default=float))
            results[split] = metrics
        return results
