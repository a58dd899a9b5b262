"""Prepare the next items of an iterator in a background thread while the consumer works on this one."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Prefetch(Iterator[T]):
    """Iterate ``items`` (consumed in a daemon thread) up to ``depth`` items ahead.

    ``wait_seconds`` adds up the time the consumer waited for an item (the data-wait share of a
    training loop). An exception in the producer is raised in the consumer; ``close()`` (also on
    garbage collection of a finished loop) stops the producer.
    """

    def __init__(self, items: Iterable[T], depth: int = 2):
        self.wait_seconds = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), daemon=True)
        self._thread.start()

    def _produce(self, it: Iterator[T]) -> None:
        try:
            for item in it:
                if self._stop.is_set():
                    return
                self._queue.put((True, item))
            self._queue.put((False, None))
        except BaseException as err:  # surfaced in the consumer
            self._queue.put((False, err))

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        t0 = time.perf_counter()
        more, item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if more:
            return item
        self.close()
        if isinstance(item, BaseException):
            raise item
        raise StopIteration

    def close(self) -> None:
        """Stop the producer and wait for its thread to end."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)

    def __del__(self) -> None:
        if not self._done:
            self.close()
