"""The worker's timing protocol, measured on a backend whose costs are known.

A stand-in backend sleeps a known time per step (so the true throughput is known) and
logs every step it is handed, so the tests can check what the timed window held."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from lmbench.backend import StepTimer
from lmbench.data.corpus import Batch, shard_batches
from lmbench.run.worker import evaluate, shape_warmup, train_pass

STEP_SECONDS = 0.02


class SleepingBackend:
    """Each step sleeps STEP_SECONDS (x `slow` for shapes it has not seen: a cold cost)."""

    def __init__(self, cold_factor=1.0):
        self.cold_factor, self.seen, self.log = cold_factor, set(), []
        self.timing = False
        self.cfg = type("Cfg", (), {"vocab_size": 10_000})()

    def step_timer(self):
        backend = self

        class Flagging(StepTimer):  # tells the backend whether a step is inside the window
            def start(self):
                backend.timing = True
                super().start()

            def stop(self):
                super().stop()
                backend.timing = False
        return Flagging()

    def train_step(self, batch, lr):
        shape = batch.inputs.shape
        self.log.append((shape, lr, self.timing))
        time.sleep(STEP_SECONDS * (self.cold_factor if shape not in self.seen else 1.0))
        self.seen.add(shape)
        return 5.0 * batch.num_targets

    def to_floats(self, handles):
        return [float(h) for h in handles]

    def sync(self):
        pass

    def reset_state(self):
        pass


def batch(lengths, T=None):
    lengths = np.array(lengths, dtype=np.int64)
    T = T or int(lengths.max())
    ids = np.ones((len(lengths), T), dtype=np.int64)
    return Batch(ids, ids.copy(), lengths)


def quiet(**event):
    pass


def test_throughput_counts_real_tokens_never_padding():
    # 4 sequences of T=50 positions holding 10 real tokens each: 80% padding
    batches = [batch([10, 10, 10, 10], T=50) for _ in range(12)]
    p = train_pass(SleepingBackend(), batches, 1.0, 2, quiet)
    real = 10 * 40  # 10 timed steps x 40 real tokens
    assert p["timed_tokens"] == real and p["padding_fraction"] == pytest.approx(0.8)
    words_per_sec = p["timed_tokens"] / p["timed_seconds"]
    # 10 steps of 20 ms: 400 real tokens in ~0.2 s; sleep may overshoot, never undershoot
    assert 0.6 * real / (10 * STEP_SECONDS) < words_per_sec <= real / (10 * STEP_SECONDS)


def test_per_step_times_add_up_to_the_timed_region():
    batches = [batch([5, 7, 9]) for _ in range(25)]
    p = train_pass(SleepingBackend(), batches, 1.0, 5, quiet)
    assert len(p["step_ms"]) == 20
    assert all(s >= STEP_SECONDS * 1e3 for s in p["step_ms"])
    region_ms = p["timed_seconds"] * 1e3
    assert sum(p["step_ms"]) <= region_ms
    assert region_ms - sum(p["step_ms"]) < 0.1 * region_ms  # the loop adds little around steps


def test_shape_warmup_leaves_no_first_time_shape_in_the_timed_window():
    rng = np.random.default_rng(0)
    batches = [batch(rng.integers(1, 30, size=4)) for _ in range(40)]  # many distinct T
    timed_shapes = {b.inputs.shape for b in batches[3:]}
    assert len(timed_shapes) > 10

    # without it, the window holds first-time shapes, and the counter sees them
    cold = SleepingBackend(cold_factor=5.0)
    p = train_pass(cold, batches, 1.0, 3, quiet)
    assert p["first_time_shapes_timed"] > 10

    backend = SleepingBackend(cold_factor=5.0)
    summary, warmed = shape_warmup(backend, batches, 3)
    p = train_pass(backend, batches, 1.0, 3, quiet, seen_shapes=warmed)
    assert p["first_time_shapes_timed"] == 0
    # every shape a timed step got had been run before, untimed and at lr 0
    run_before = set()
    for shape, lr, timed in backend.log:
        if timed:
            assert shape in run_before, shape
        else:
            run_before.add(shape)
    assert all(lr == 0.0 for _, lr, timed in backend.log[:2 * summary["count"]])
    # the cold cost is measured apart: 4 extra sleeps of 20 ms per new shape
    assert summary["count"] == len(timed_shapes - {b.inputs.shape for b in batches[:3]})
    assert summary["extra_ms_median"] == pytest.approx(4 * STEP_SECONDS * 1e3, rel=0.5)
    # and it no longer inflates the timed steps
    assert max(p["step_ms"]) < 3 * STEP_SECONDS * 1e3


def test_every_data_parallel_worker_warms_up_its_own_shard_shapes_in_the_same_steps(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "STEP_SECONDS", 0.001)
    rng = np.random.default_rng(1)
    # 5 rows over 2 workers: shards of 3 and 2 rows, each trimmed to its own longest row
    batches = [batch(rng.integers(1, 25, size=5)) for _ in range(30)]
    warmup, runs = 3, []
    for rank in (0, 1):
        backend = SleepingBackend()
        summary, warmed = shape_warmup(backend, batches, warmup, rank, 2)
        mine = shard_batches(batches, rank, 2)
        p = train_pass(backend, mine, 1.0, warmup, quiet, seen_shapes=warmed)
        runs.append((summary, p, backend.log))
        # no timed step of this worker met a shape for the first time
        assert p["first_time_shapes_timed"] == 0, rank
        assert summary["new_shapes"] == len({b.inputs.shape for b in mine[warmup:]}
                                            - {b.inputs.shape for b in mine[:warmup]})
    # a warm-up step is a collective: both workers ran as many, more than either's own new shapes
    (s0, _, log0), (s1, _, log1) = runs
    assert s0["count"] == s1["count"] > max(s0["new_shapes"], s1["new_shapes"])
    assert sum(1 for _, lr, _ in log0 if lr == 0.0) == sum(1 for _, lr, _ in log1 if lr == 0.0)


class EvalDouble:
    """eval_step sleeps COLD_S the first time it meets a shape (a compile), WARM_S after;
    logs (shape, first time?) and returns a known NLL: 1 per real target."""
    COLD_S, WARM_S = 0.02, 0.001

    def __init__(self):
        self.seen, self.log = set(), []

    def eval_step(self, batch):
        first = batch.inputs.shape not in self.seen
        self.seen.add(batch.inputs.shape)
        self.log.append((batch.inputs.shape, first))
        time.sleep(self.COLD_S if first else self.WARM_S)
        return float(batch.num_targets)

    def to_floats(self, handles):
        return [float(h) for h in handles]

    def sync(self):
        pass

    def reset_state(self):
        pass


def test_evaluation_times_no_first_time_shape_and_keeps_the_cold_cost_apart():
    batches = [batch([3, 5]), batch([7, 2]), batch([3, 4]), batch([1, 7]), batch([9, 9, 9])]
    shapes = {b.inputs.shape for b in batches}  # (2,5) (2,7) (2,4) (3,9): batch 4 repeats (2,7)
    backend, warm = EvalDouble(), {"seen": set(), "first": [], "again": []}
    ev = evaluate(backend, batches, warm)
    timed = backend.log[-len(batches):]
    assert [s for s, _ in timed] == [b.inputs.shape for b in batches]
    assert not any(first for _, first in timed)
    cold = ev["cold_shapes"]
    assert cold["count"] == cold["new_shapes"] == len(shapes) == 4
    # every warm-up ran twice, untimed: a compile and a warm step per shape (sleep never undershoots)
    assert cold["seconds"] >= len(shapes) * (EvalDouble.COLD_S + EvalDouble.WARM_S)
    assert ev["tokens"] == sum(b.num_targets for b in batches)
    assert ev["ppl"] == pytest.approx(np.e)  # 1 nat per target, from the timed pass alone
    # a second evaluation (the next epoch's validation) warms nothing again
    calls = len(backend.log)
    evaluate(backend, batches, warm)
    assert len(backend.log) - calls == len(batches)


def test_a_framework_fastest_once_warm_can_take_longer_over_a_first_epoch():
    from lmbench.run.worker import first_epoch_projection

    epoch = {"tokens": 900_000, "steps": 2_000, "cold_steps": 61}  # 61 steps meet a new shape
    # compiles per shape (~0.9 s each) but is faster once warm
    compiling = first_epoch_projection({"first_epoch": epoch, "train_words_per_sec": 3_000.0,
                                        "cold_shapes": {"extra_ms_median": 900.0}, "first_step_ms": 4_000.0})
    # slower once warm, a new shape costs it 5 ms
    eager = first_epoch_projection({"first_epoch": epoch, "train_words_per_sec": 2_800.0,
                                    "cold_shapes": {"extra_ms_median": 5.0}, "first_step_ms": 100.0})
    assert compiling["seconds"] == pytest.approx(300 + 60 * 0.9 + 4)  # the first step pays its own compile
    assert eager["seconds"] == pytest.approx(900_000 / 2_800 + 60 * 0.005 + 0.1)
    assert compiling["words_per_sec"] < eager["words_per_sec"]
    assert compiling["how"].startswith("projected")
    # a cold shape that measured cheaper than a warm one (noise) adds nothing, never subtracts
    noisy = first_epoch_projection({"first_epoch": epoch, "train_words_per_sec": 3_000.0,
                                    "cold_shapes": {"extra_ms_median": -2.0}, "first_step_ms": 0.0})
    assert noisy["seconds"] == pytest.approx(300)


def test_the_first_epoch_counts_every_step_where_any_worker_meets_a_new_shape():
    from lmbench.run.worker import new_shape_steps

    batches = [batch([3, 3]), batch([3, 3]), batch([3, 1]), batch([1, 3]), batch([3, 1])]
    # one worker sees (2, 3) only; two see (1, 3), then (1, 1) at step 2 and (1, 3)/(1, 1) swapped at 3
    assert sum(any(n) for n in new_shape_steps(batches, 1)) == 1
    assert [any(n) for n in new_shape_steps(batches, 2)] == [True, False, True, True, False]
