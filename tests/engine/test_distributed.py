"""Training on torch.distributed: the sharding arithmetic in one process, then a real 2-process gloo
DDP run launched by torchrun on the CPU (finishes, ranks agree on the weights after every step, the
gathered evaluation equals a one-process evaluation of the same checkpoint, kill -9 + --resume
continues exactly)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from medattn.data.batches import TrainBatches
from medattn.data.transforms import BatchAugment
from medattn.engine.distributed import Distributed, per_rank_batch, predict_sharded, shard_slice
from medattn.engine.loop import train_one_epoch
from medattn.engine.optim import WarmupCosine
from medattn.engine.precision import Precision
from medattn.errors import ConfigError
from medattn.models.base import LossContext

from test_trainer import tiny_set  # tests/engine is on sys.path (pytest rootdir imports)

NO_AUGMENT = BatchAugment(hflip=False, vflip=False, rot90=False, scale=None, brightness=0, contrast=0, saturation=0)


@pytest.mark.parametrize("n,world", [(10, 2), (7, 3), (1, 2), (64, 4)])
def test_shards_cover_every_item_once(n, world):
    parts = [shard_slice(n, r, world) for r in range(world)]
    covered = np.concatenate([np.arange(n)[p] for p in parts])
    assert covered.tolist() == list(range(n))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_predict_sharded_in_one_process_is_the_plain_prediction():
    rows = np.arange(12.0).reshape(6, 2)
    assert np.array_equal(predict_sharded(Distributed(), 6, lambda part: rows[part]), rows)


def test_global_batch_must_divide_into_ranks_and_micro_batches():
    assert per_rank_batch(32, 2, 2) == 8
    with pytest.raises(ConfigError, match=r"train.batch_size: 30 is the global batch .* 4 rank\(s\) x train.accumulate 2"):
        per_rank_batch(30, 4, 2)
    with pytest.raises(ConfigError, match="fewer than the global batch"):
        TrainBatches(tiny_set(10, 0), 16, 0, NO_AUGMENT, world_size=2)


def test_rank_shards_of_a_step_are_the_global_batch():
    train = tiny_set(40, 0)
    whole = list(TrainBatches(train, 8, 5, NO_AUGMENT)._make(2))
    ranks = [list(TrainBatches(train, 8, 5, NO_AUGMENT, rank=r, world_size=2)._make(2)) for r in range(2)]
    assert len(whole) == len(ranks[0]) == len(ranks[1]) == 5
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)


class _Linear(torch.nn.Module):
    """A model without batch statistics, so one batch and its micro-batches give the same gradient."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 4, 3)

    def forward_train(self, x, y, ctx):
        loss = torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)
        return type("Out", (), {"losses": {"total": loss}})()


class _Step(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, ctx):
        return self.model.forward_train(x, y, ctx).losses


def test_gradient_accumulation_equals_the_whole_batch():
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 3, (8,))
    weights = []
    for accumulate in (1, 2, 4):
        torch.manual_seed(1)
        model = _Linear()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        opt.param_groups[0]["base_lr"] = 0.5
        schedule = WarmupCosine(total_steps=10, min_lr_ratio=1.0)
        train_one_epoch(_Step(model), opt, [(x, y)], LossContext(criterion=None, epoch=0, num_epochs=1), schedule, 0,
                        device=torch.device("cpu"), precision=Precision(torch.device("cpu"), None),
                        channels_last=False, accumulate=accumulate, progress=False)
        weights.append(model.fc.weight.detach().clone())
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(weights[2], weights[0], rtol=1e-6, atol=1e-7)


# --- a real 2-process DDP run (gloo, CPU) -----------------------------------------------------------------

TINY = ["model.backbone=resnet10t", "model.pretrained=false", "data.image_size=32", "train.batch_size=16",
        "train.precision=fp32", "train.num_threads=1", "train.lr=3e-3", "data.options.n_train=64",
        "data.options.n_val=21", "data.options.n_test=19", "data.test_splits=[test]", "seed=3"]


def _sets(items):
    return sum((["--set", s] for s in items), [])


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MEDATTN_DDP_VERIFY": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(*args, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "medattn", "train", "--quiet", "--bootstrap", "0", *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _epochs(run):
    path = run / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    proc = _torchrun("--config", "demo", "--out", str(run), *_sets(TINY + ["train.epochs=3"]))
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    return run, out


def test_ddp_run_finishes_and_records_its_world(ddp_run):
    run, out = ddp_run
    assert "DDP gloo x2" in out
    assert json.loads((run / "distributed.json").read_text())["world_size"] == 2
    assert json.loads((run / "distributed.json").read_text())["backend"] == "gloo"
    assert [e["epoch"] for e in _epochs(run)] == [0, 1, 2]  # one line per epoch: only rank 0 writes
    assert out.count("best balanced_accuracy") == 1


def test_gathered_evaluation_equals_one_process_on_the_same_checkpoint(ddp_run, tmp_path):
    run, _ = ddp_run
    from medattn.cli import main

    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--split", "test", "--bootstrap", "0", "--out", str(out)]) == 0
    single, gathered = json.loads(out.read_text()), json.loads((run / "eval_test.json").read_text())
    numbers = [k for k, v in gathered.items() if isinstance(v, float)]
    assert {"balanced_accuracy", "macro_auc", "macro_ap"} <= set(numbers)
    for key in numbers:
        assert single[key] == pytest.approx(gathered[key], abs=1e-9), key
    rows = (run / "predictions_test.csv").read_text().splitlines()[1:]
    ids = [r.split(",")[0] for r in rows]
    assert len(ids) == 19 and len(set(ids)) == 19  # every test image once: nothing padded or missing


def test_kill_and_resume_under_ddp_continues_the_run(ddp_run, tmp_path):
    straight, _ = ddp_run
    run = tmp_path / "run"
    proc = _torchrun("--config", "demo", "--out", str(run), *_sets(TINY + ["train.epochs=3"]))
    deadline = time.monotonic() + 300
    while not _epochs(run) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in [proc.pid, *_descendants(proc.pid)]:  # torchrun and both ranks (in their own sessions), mid-run
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()
    done = len(_epochs(run))
    assert 1 <= done < 3, f"the run was not stopped mid-way ({done} epochs logged)"
    resumed = _torchrun("--resume", "--out", str(run))
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    assert "resuming" in out
    a, b = _epochs(straight), _epochs(run)
    assert [e["epoch"] for e in b] == [0, 1, 2]
    assert b[-1]["train"]["total"] == pytest.approx(a[-1]["train"]["total"], rel=1e-5)
    assert b[-1]["val"]["balanced_accuracy"] == pytest.approx(a[-1]["val"]["balanced_accuracy"], abs=1e-9)


def test_ranks_with_different_configs_are_one_clear_error(monkeypatch):
    two = Distributed(rank=0, world_size=2, backend="gloo")
    monkeypatch.setattr(Distributed, "all_objects", lambda self, value: [value, "another config"])
    with pytest.raises(ConfigError, match=r"every rank must run the same config; rank\(s\) \[1\] differ from rank 0"):
        two.check_same("fingerprint", "config")
