"""Epoch training: schedule bookkeeping, time-to-target, atomic checkpoints, exact resume."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from lmbench.run import checkpoint
from lmbench.config import make_config
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec

EPOCHS = dict(epochs=3, epoch_batches=6, eval="valid", eval_batches=2, warmup=1)


def test_checkpoint_round_trip_and_truncation(tmp_path):
    path = tmp_path / "ck.npz"
    weights = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    written = {"epoch": 2, "epoch_log": [{"epoch": 1}], "wall_seconds": 12.5, "time_to_target_seconds": None,
               "config": make_config("tiny").to_dict(), "backend": ["torch", "packed"]}
    checkpoint.save(path, weights, written)
    got, meta = checkpoint.load(path)
    assert meta == written
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left beside it
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(checkpoint.CheckpointError) as e:
            checkpoint.load(path)
        assert str(path) in str(e.value) and "damaged or truncated" in str(e.value)
        assert "Delete it" in str(e.value)


def test_resume_rejects_a_damaged_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(b"PK\x03\x04 not really a checkpoint")
    spec = run_spec(make_config("tiny"), "torch", checkpoint=path, resume=True, **EPOCHS)
    record = run_isolated(spec)
    assert record["status"] == "failed" and record["error_kind"] == "checkpoint"
    assert "damaged or truncated" in record["error"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = make_config("tiny")
    full = run_isolated(run_spec(cfg, "torch", checkpoint=tmp / "full.npz", target_ppl=1e9, **EPOCHS))

    def kill_after_epoch_2(event):
        if event.get("phase") == "epoch" and event["epoch"] == 2:
            os.kill(event["pid"], signal.SIGKILL)

    spec = run_spec(cfg, "torch", checkpoint=tmp / "cut.npz", resume=True, target_ppl=1.0, **EPOCHS)
    killed = run_isolated(spec, on_progress=kill_after_epoch_2)
    resumed = run_isolated(spec)
    return full, killed, resumed


def test_uninterrupted_run_logs_every_epoch_with_its_lr(runs):
    full = runs[0]
    assert full["status"] == "ok", full.get("error")
    log = full["metrics"]["epoch_log"]
    assert [e["epoch"] for e in log] == [1, 2, 3]
    assert [e["lr"] for e in log] == [1.0, 0.5, 0.25]  # tiny: decay after 1 epoch, by 2
    assert all(e["valid_ppl"] > 0 and e["train_ppl"] > 0 for e in log)
    assert log[0]["wall_seconds"] < log[1]["wall_seconds"] < log[2]["wall_seconds"]


def test_time_to_target_bookkeeping(runs):
    full, _, resumed = runs
    ttt = full["metrics"]["time_to_target_seconds"]  # target 1e9: reached after epoch 1
    assert ttt is not None and 0 < ttt <= full["metrics"]["epoch_log"][0]["wall_seconds"]
    assert resumed["metrics"]["time_to_target_seconds"] is None  # target 1.0: never reached
    assert resumed["metrics"]["target_ppl"] == 1.0


def test_killed_run_resumes_to_the_same_result(runs):
    full, killed, resumed = runs
    assert killed["status"] == "failed" and "SIGKILL" in killed["error"]
    assert resumed["status"] == "ok", resumed.get("error")
    assert resumed["metrics"]["resumed_from_epoch"] == 2
    a, b = full["metrics"]["epoch_log"], resumed["metrics"]["epoch_log"]
    assert [e["valid_ppl"] for e in a] == [e["valid_ppl"] for e in b]  # bitwise, on the CPU
    assert [e["train_ppl"] for e in a] == [e["train_ppl"] for e in b]
    assert full["metrics"]["valid_ppl"] == resumed["metrics"]["valid_ppl"]


def test_a_finished_training_extends_to_more_epochs_but_not_to_another_config(tmp_path):
    ckpt = tmp_path / "ck.npz"
    settings = {**EPOCHS, "eval": "none"}
    one = run_isolated(run_spec(make_config("tiny", epochs=1), "torch", checkpoint=ckpt,
                                **{**settings, "epochs": 1}))
    assert one["status"] == "ok", one.get("error")
    # `lmbench run --epochs 2 --resume` after a 1-epoch run: the schedule only depends on the epoch
    more = run_isolated(run_spec(make_config("tiny", epochs=2), "torch", checkpoint=ckpt, resume=True,
                                 **{**settings, "epochs": 2}))
    assert more["status"] == "ok", more.get("error")
    assert more["metrics"]["resumed_from_epoch"] == 1
    assert [e["epoch"] for e in more["metrics"]["epoch_log"]] == [1, 2]
    assert more["metrics"]["epoch_log"][0] == one["metrics"]["epoch_log"][0]
    other = run_isolated(run_spec(make_config("tiny", epochs=3, hidden=16), "torch", checkpoint=ckpt,
                                  resume=True, **{**settings, "epochs": 3}))
    assert other["status"] == "failed" and other["error_kind"] == "checkpoint"
    assert "belongs to another run (torch/packed; differs in hidden)" in other["error"]
