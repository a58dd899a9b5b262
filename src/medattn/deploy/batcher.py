"""Micro-batching: requests from many clients, one model, one worker thread.

``MicroBatcher.submit(image, maps)`` puts a decoded image on a queue and returns a
``concurrent.futures.Future``. The worker takes the first waiting request, then whatever else arrives
within ``max_wait_ms`` up to ``max_batch`` images, runs them as one batch and resolves every future
with its own ``Prediction``. So the model is only ever called from one thread (no locking in the
predictor), requests are answered in arrival order within a batch, and a burst of clients shares the
cost of a forward pass. Requests for maps from a model whose maps depend on the batch (BIIGMA's
per-head maps) are run one at a time, so an answer never depends on another client's image.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .predictor import Prediction, Predictor


@dataclass
class _Request:
    image: np.ndarray
    maps: bool
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """A queue in front of ``predictor`` served by one daemon thread (``start`` / ``stop``)."""

    def __init__(self, predictor: Predictor, max_batch: int = 16, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predictor, self.max_batch, self.max_wait = predictor, int(max_batch), max(0.0, max_wait_ms) / 1000.0
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.served = 0
        self.batches = 0
        self.largest_batch = 0

    def start(self) -> "MicroBatcher":
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="medattn-model", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Answer what is queued, then end the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, image: np.ndarray, maps: bool = False) -> Future:
        """Queue one uint8 S x S x 3 image; the future resolves to its ``Prediction``."""
        if self._thread is None:
            raise RuntimeError("the batcher is not running (call start())")
        request = _Request(image, bool(maps))
        self._queue.put(request)
        return request.future

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, requests: list[_Request], maps: bool) -> None:
        try:
            results: list[Prediction] = self.predictor.predict(np.stack([r.image for r in requests]), maps)
        except Exception as err:  # noqa: BLE001 - the clients get the error, the worker keeps serving
            for r in requests:
                r.future.set_exception(err)
            return
        for r, p in zip(requests, results):
            r.future.set_result(p)
        self.served += len(requests)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(requests))

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, stopping = self._collect(first)
            # One call for the plain requests and one for those that want maps (an ONNX run computes
            # every requested output; plain requests should not pay for maps).
            for maps in (False, True):
                group = [r for r in batch if r.maps == maps]
                if not group:
                    continue
                if maps and not self.predictor.batch_independent:
                    for r in group:
                        self._run([r], True)
                else:
                    self._run(group, maps)
