"""``precision: auto`` on a CPU with bf16 flags is measured, not assumed: the faster of bf16 and fp32
for the real model and batch, with a margin so that timing noise does not flip the choice."""
import time

import torch

from medattn.engine.precision import Precision, auto_needs_measuring, faster_cpu_precision

CPU = torch.device("cpu")


def _step_taking(bf16_s: float, fp32_s: float):
    calls = []

    def step(precision: Precision) -> None:
        calls.append(precision.name)
        time.sleep(bf16_s if precision.name == "bf16" else fp32_s)

    return step, calls


def test_the_faster_precision_is_chosen_and_both_are_timed():
    step, calls = _step_taking(0.002, 0.03)
    chosen, seconds = faster_cpu_precision(step, CPU)
    assert chosen.name == "bf16" and seconds["bf16"] < seconds["fp32"]
    assert calls == ["bf16"] * 3 + ["fp32"] * 3  # one warm-up and two timed steps each
    step, _ = _step_taking(0.03, 0.002)
    assert faster_cpu_precision(step, CPU)[0].name == "fp32"


def test_bf16_must_win_by_the_margin():
    step, _ = _step_taking(0.02, 0.021)  # 5% faster: not enough, fp32 (exact) is kept
    assert faster_cpu_precision(step, CPU)[0].name == "fp32"


def test_only_auto_on_the_cpu_is_measured():
    assert not auto_needs_measuring("fp32", CPU) and not auto_needs_measuring("bf16", CPU)
    assert not auto_needs_measuring("auto", torch.device("meta"))
