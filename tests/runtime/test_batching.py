"""The dynamic batcher and the LRU cache, on their own (no models)."""

import threading
import time
from concurrent.futures import CancelledError

import pytest

from vidsearch.runtime.batching import DynamicBatcher
from vidsearch.runtime.cache import LruCache


def test_concurrent_items_run_together_within_the_batch_limit_and_keep_their_results() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        gate.wait(5)  # the first batch holds the model while the others queue up
        sizes.append(len(items))
        return [2 * item for item in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=4)
    futures = [batcher.submit(i) for i in range(10)]
    time.sleep(0.05)
    gate.set()
    assert [f.result(5) for f in futures] == [2 * i for i in range(10)]
    batcher.close()
    assert sum(sizes) == 10
    assert max(sizes) == 4  # queued items were batched, never beyond the limit
    assert len(sizes) <= 4


def test_a_lone_item_does_not_wait_without_a_delay_but_waits_with_one() -> None:
    for delay, low, high in ((0.0, 0.0, 0.05), (0.2, 0.18, 1.0)):
        batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda items: items, 8, max_delay_s=delay)
        started = time.monotonic()
        assert batcher.map([7], timeout_s=5) == [7]
        assert low <= time.monotonic() - started < high
        batcher.close()


def test_the_delay_gathers_items_that_arrive_within_it() -> None:
    sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=8, max_delay_s=0.3)
    first = batcher.submit(1)
    time.sleep(0.05)
    second = batcher.submit(2)
    assert (first.result(5), second.result(5)) == (1, 2)
    batcher.close()
    assert sizes == [2]


def test_a_lone_call_runs_in_its_own_thread_and_calls_meanwhile_are_batched() -> None:
    seen: list[tuple[str, int]] = []
    entered, gate = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.append((threading.current_thread().name, len(items)))
        if len(seen) == 1:
            entered.set()
            gate.wait(5)  # the model stays busy while the other calls arrive
        return [-item for item in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=8, name="test-batcher")
    results: dict[int, list[int]] = {}
    first = threading.Thread(target=lambda: results.__setitem__(1, batcher.map([1])), name="first-caller")
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.map([i])))
              for i in range(2, 6)]
    for thread in others:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in [first, *others]:
        thread.join(5)
    batcher.close()
    assert results == {i: [-i] for i in range(1, 6)}
    assert seen == [("first-caller", 1), ("vidsearch-test-batcher", 4)]


def test_inline_runs_leave_the_idle_worker_asleep() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(lambda items: items, max_batch=8)
    wakes: list[str] = []
    condition = batcher._cond
    notify, notify_all = condition.notify, condition.notify_all
    condition.notify = lambda n=1: (wakes.append("notify"), notify(n))[1]  # type: ignore[method-assign]
    condition.notify_all = lambda: (wakes.append("notify_all"), notify_all())[1]  # type: ignore[method-assign]
    assert [batcher.map([i]) for i in range(5)] == [[i] for i in range(5)]
    assert wakes == []  # nothing was queued, so the worker had nothing to do
    assert batcher.submit(9).result(5) == 9  # queued work still wakes it
    assert wakes
    batcher.close()


def test_a_caller_that_runs_out_of_time_cancels_its_items() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        seen.extend(items)
        gate.wait(5)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=1)
    busy = threading.Thread(target=lambda: batcher.map([1]))
    busy.start()
    time.sleep(0.05)
    with pytest.raises(TimeoutError, match="2 items were not done in time"):
        batcher.map([2, 3], timeout_s=0.05)
    gate.set()
    busy.join(5)
    batcher.close()
    assert seen == [1]


def test_a_failing_batch_fails_every_item_in_it_and_the_batcher_goes_on() -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=1)
    with pytest.raises(ValueError, match="unlucky"):
        batcher.submit(13).result(5)
    assert batcher.submit(14).result(5) == 14
    batcher.close()


def test_a_cancelled_item_never_reaches_the_model() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        gate.wait(5)
        seen.extend(items)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(run, max_batch=1)
    busy = batcher.submit(1)
    time.sleep(0.05)
    dropped = batcher.submit(2)
    assert dropped.cancel()
    gate.set()
    assert busy.result(5) == 1
    with pytest.raises(CancelledError):
        dropped.result(5)
    batcher.close()
    assert seen == [1]


def test_the_cache_evicts_the_least_recently_used_and_counts() -> None:
    cache: LruCache[str, int] = LruCache(2, lambda key, value: 1)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses) == (2, 3, 1)
    off: LruCache[str, int] = LruCache(0, lambda key, value: 1)
    off.put("a", 1)
    assert off.get("a") is None


def test_the_cache_is_bounded_in_bytes_not_entries() -> None:
    cache: LruCache[str, bytes] = LruCache(100, lambda key, value: len(key) + len(value))
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.stats().bytes == 82
    cache.put("huge", b"x" * 200)  # heavier than the whole cache: not kept, nothing evicted for it
    assert cache.get("huge") is None
    assert cache.stats().size == 2
    cache.put("c", b"x" * 40)  # 123 bytes: the least recently used goes
    assert cache.get("a") is None
    assert cache.get("b") is not None
    cache.put("b", b"y")  # replacing an entry reweighs it
    assert cache.stats().bytes == 41 + 2
