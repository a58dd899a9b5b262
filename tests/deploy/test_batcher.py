"""The micro-batcher: batches what arrives together, keeps batch-dependent maps apart, survives errors."""
import numpy as np
import pytest

from medattn.deploy.batcher import MicroBatcher
from medattn.deploy.predictor import Predictor


class Recording(Predictor):
    """Answers image i with probabilities [v, 1 - v] (v = the image's first pixel / 255); records batches."""

    def __init__(self, independent: bool = True, fail_on: int | None = None):
        self.info = {"image_size": 2, "maps_batch_independent": independent, "input": {"dtype": "uint8"}}
        self.calls: list[tuple[int, bool]] = []
        self.fail_on = fail_on

    def run_batch(self, x, maps):
        self.calls.append((len(x), maps))
        v = x[:, 0, 0, 0].astype(np.float64)
        if self.fail_on is not None and (v == self.fail_on).any():
            raise RuntimeError("model failed")
        return {"probabilities": np.stack([v / 255, 1 - v / 255], axis=1)}


def image(v: int) -> np.ndarray:
    return np.full((2, 2, 3), v, np.uint8)


@pytest.mark.parametrize("independent", [True, False])
def test_requests_that_arrive_together_share_a_batch(independent):
    predictor = Recording(independent)
    batcher = MicroBatcher(predictor, max_batch=8, max_wait_ms=300).start()
    try:
        futures = [batcher.submit(image(v), maps=v % 2 == 1) for v in range(6)]
        answers = [f.result(10).probabilities[0] for f in futures]
    finally:
        batcher.stop()
    assert answers == pytest.approx([v / 255 for v in range(6)])  # each client gets its own answer
    plain = [n for n, maps in predictor.calls if not maps]
    with_maps = [n for n, maps in predictor.calls if maps]
    assert plain == [3]
    assert with_maps == ([3] if independent else [1, 1, 1])  # batch-dependent maps: one image at a time
    assert batcher.served == 6 and batcher.largest_batch == 3


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    predictor = Recording(fail_on=7)
    batcher = MicroBatcher(predictor, max_batch=4, max_wait_ms=200).start()
    try:
        bad, also = batcher.submit(image(7)), batcher.submit(image(8))
        with pytest.raises(RuntimeError, match="model failed"):
            bad.result(10)
        with pytest.raises(RuntimeError, match="model failed"):  # it shared the batch
            also.result(10)
        assert batcher.submit(image(9)).result(10).probabilities[0] == pytest.approx(9 / 255)
    finally:
        batcher.stop()
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit(image(1))
