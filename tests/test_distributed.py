"""Data-parallel runs (`--workers N`): the split of the global batch, the process handling
(a failed worker takes the run down, never hangs it, leaves nothing behind), and the
equivalence proof -- for every backend that declares DATA_PARALLEL, each on its own
engine; the injected bugs go into copies of the PyTorch backend."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmbench.run import launch
from lmbench.backend import available_backends, data_parallel
from lmbench.config import ConfigError, make_config
from lmbench.data.corpus import Batch, PAD_ID, shard, shard_batches
from lmbench.run.runner import run_isolated
from lmbench.runspec import run_spec
from lmbench.verify.verify import verify_workers

MUTANTS = Path(__file__).parent / "mutants"
ENGINES = [b for b in available_backends() if data_parallel(b)]


def batch(lengths, carry_state=False):
    lengths = np.array(lengths)
    steps = np.arange(lengths.max())
    mask = steps[None, :] < lengths[:, None]
    ids = np.arange(len(lengths))[:, None] * 100 + steps[None, :]
    return Batch(np.where(mask, ids, 0), np.where(mask, ids + 1, PAD_ID), lengths, carry_state)


def test_a_shard_is_contiguous_rows_trimmed_to_its_longest_sequence():
    b = batch([5, 3, 6, 4, 2])
    first, second = shard(b, 0, 2), shard(b, 1, 2)
    assert first.inputs.tolist() == b.inputs[:3].tolist()  # longest of rows 0-2 is 6: no trim
    assert second.inputs.tolist() == [[300, 301, 302, 303], [400, 401, 0, 0]]
    assert second.targets[1].tolist() == [401, 402, PAD_ID, PAD_ID]
    assert [s.batch_size for s in (first, second)] == [3, 2]
    assert first.loss_sequences == second.loss_sequences == 5  # the global batch's
    assert first.num_targets + second.num_targets == b.num_targets


def test_every_row_goes_to_exactly_one_worker_and_streams_stay_put():
    b = batch([4] * 20, carry_state=True)
    for workers in (1, 2, 3, 7):
        shards = [shard(b, r, workers) for r in range(workers)]
        assert np.concatenate([s.inputs for s in shards]).tolist() == b.inputs.tolist()
        assert all(s.carry_state for s in shards)
        assert max(s.batch_size for s in shards) - min(s.batch_size for s in shards) <= 1


def test_a_batch_smaller_than_the_workers_is_dropped_by_every_worker():
    batches = [batch([3, 2, 4]), batch([2]), batch([5, 5])]
    assert [s.batch_size for s in shard_batches(batches, 1, 2)] == [1, 1]
    with pytest.raises(ValueError, match="cannot be split over 2 workers"):
        shard(batches[1], 1, 2)


@pytest.mark.parametrize("kw,needle", [
    (dict(workers=2, epochs=1, steps=None), "not supported"),
    (dict(workers=2, threads=1), "threads must be a multiple of workers"),
    (dict(workers=0), "invalid workers=0"),
    (dict(workers=2, scaling="diagonal"), "invalid scaling='diagonal'"),
])
def test_bad_data_parallel_settings_are_refused_before_any_work(kw, needle):
    args = dict(steps=5) | kw
    with pytest.raises(ConfigError, match=needle):
        run_spec(make_config("tiny"), "torch", **args)


def test_a_backend_without_data_parallel_support_is_refused(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text('LAYOUTS = ("packed",)\n')
    with pytest.raises(ConfigError, match="has no data-parallel support"):
        run_spec(make_config("tiny"), str(plain), steps=5, workers=2, threads=2)


def test_without_a_launcher_a_failed_worker_takes_the_others_down(tmp_path, monkeypatch):
    # workers started by lmbench itself (a backend whose DATA_PARALLEL has no launcher):
    # rank 1 fails at once, rank 0 would sleep for a minute
    (tmp_path / "fake_worker.py").write_text(
        "import os, sys, time\n"
        "rank = int(os.environ['LMBENCH_RANK'])\n"
        "assert os.environ['LMBENCH_WORKERS'] == '2' and len(os.environ['LMBENCH_PORTS'].split(',')) == 2\n"
        "sys.exit(3) if rank == 1 else time.sleep(60)\n")
    backend = tmp_path / "nolauncher.py"
    backend.write_text('LAYOUTS = ("x",)\nDATA_PARALLEL = {"launcher": None, "engine": "test"}\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with open(tmp_path / "out.txt", "wb") as out:
        job = launch.start("fake_worker", [], str(backend), 2, tmp_path, out)
    t0 = time.monotonic()
    while not job.poll():
        assert time.monotonic() - t0 < 30, "the sleeping worker was not stopped"
        time.sleep(0.1)
    assert "worker rank 1 exited with status 3" in job.exits()
    assert "worker rank 0 was stopped by lmbench when another ended" in job.exits()  # not blamed


# few steps: each rank warms up every shard shape it will time, and its all-reduce A/B plays
# the timed steps again (a TensorFlow trace per new shape in each); torch's run takes more,
# for the first-time-shapes test below
TWO_WORKER_STEPS = {"torch": 12}


@pytest.fixture(scope="module")
def two_worker_run():
    """backend -> the record of its two-worker tiny run (sentence mode), made once."""
    records = {}

    def get(backend):
        if backend not in records:
            spec = run_spec(make_config("tiny"), backend, steps=TWO_WORKER_STEPS.get(backend, 5), warmup=2,
                            eval="valid", eval_batches=3, workers=2, threads=2)
            records[backend] = run_isolated(spec, timeout=300)
        return records[backend]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("backend", ENGINES)
def test_a_two_worker_run_records_the_whole_job(backend, two_worker_run):
    r = two_worker_run(backend)
    assert r["status"] == "ok", r.get("error")
    m, dp = r["metrics"], r["metrics"]["data_parallel"]
    assert r["run"]["workers"] == 2 and r["run"]["scaling"] == "strong"
    assert dp["global_batch_size"] == 32 and dp["per_worker_batch_size"] == [16, 16]
    assert dp["threads_per_worker"] == 1 and [w["rank"] for w in dp["per_worker"]] == [0, 1]
    # all workers' real tokens over the slowest worker's timed region
    assert m["timed_tokens"] == sum(w["timed_tokens"] for w in dp["per_worker"])
    assert m["train_seconds"] == max(w["train_seconds"] for w in dp["per_worker"])
    assert m["train_words_per_sec"] == pytest.approx(m["timed_tokens"] / m["train_seconds"])
    assert 0.0 <= dp["allreduce_share"] < 1.0 and dp["imbalance"] >= 0.0
    assert r["environment"]["data_parallel"]["workers"] == 2 and r["environment"]["data_parallel"]["collectives"]
    assert m["valid_ppl"] > 1  # rank 0 evaluated


@pytest.mark.slow
def test_weak_scaling_gives_every_worker_a_whole_batch():
    spec = run_spec(make_config("tiny"), "torch", steps=3, warmup=1, eval="none", workers=2, threads=2,
                    scaling="weak")
    r = run_isolated(spec, timeout=300)
    assert r["status"] == "ok", r.get("error")
    assert r["metrics"]["data_parallel"]["per_worker_batch_size"] == [32, 32]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ENGINES)
def test_a_killed_worker_fails_the_run_in_time_and_leaves_no_process(backend):
    pids, killed = [], []

    def on_progress(event):
        if event.get("phase") == "start":
            pids.append(event["pid"])  # every worker announces itself before joining
        elif event.get("phase") == "train" and not killed:
            killed.append(pids[-1])
            os.kill(pids[-1], signal.SIGKILL)

    # stream windows: one shape, so the workers reach their training steps (the kill) after one
    # warm-up shape, not after warming every sentence length 400 random batches would time
    spec = run_spec(make_config("tiny", mode="stream"), backend, steps=400, warmup=2, eval="none", workers=2,
                    threads=2)
    t0 = time.monotonic()
    r = run_isolated(spec, timeout=120, on_progress=on_progress)
    assert killed and time.monotonic() - t0 < 120
    assert r["status"] == "failed" and r["error_kind"] == "crash"
    assert "left no result" in r["error"] and "worker rank" in r["error"]
    time.sleep(0.5)
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", ENGINES)
def test_verify_workers_passes_with_uneven_shards(backend):
    # a global batch of 33 over 2 workers: shards of 17 and 16 sequences
    assert verify_workers(2, backends=[backend], batch_size=33) == 0


@pytest.mark.slow
def test_verify_workers_catches_each_injected_bug(capsys):
    for mutant in ("dp_unscaled_loss", "dp_local_mean", "dp_clip_before_allreduce"):
        capsys.readouterr()
        # one process, each is torch (the bugs are in what N workers do): held to torch's, as
        # the uneven-shards test above holds torch's own workers (the session computes it once)
        assert verify_workers(2, backends=[str(MUTANTS / f"{mutant}.py")], batch_size=33, reference="torch") == 1, \
            mutant
        out = capsys.readouterr().out
        assert "FAIL" in out and "trained_weights[" in out, mutant


def test_n_workers_compute_fewer_padded_positions_than_one_on_the_same_batches():
    from lmbench.data.corpus import shard_shapes
    from lmbench.run.worker import job_padded_positions, lstm_work

    batches = [batch([5, 1, 1, 1]), batch([2, 2, 3, 3])]
    # one worker: 4 x 5 + 4 x 3; two: [5, 1] -> 2 x 5, [1, 1] -> 2 x 1, [2, 2] -> 2 x 2, [3, 3] -> 2 x 3
    assert job_padded_positions(batches, 1) == 32 and job_padded_positions(batches, 2) == 22
    for b in batches:  # each worker can tell every shard's shape without making it
        assert shard_shapes(b, 2) == [shard(b, r, 2).inputs.shape for r in (0, 1)]
    real = sum(b.num_targets for b in batches)  # 18 either way: the shards partition the rows
    one = {"steps": 3, "warmup_steps": 1, "timed_tokens": real, "timed_padded_positions": 32}
    two = {**one, "timed_padded_positions": 22}
    padded1, padded2 = lstm_work(one, True), lstm_work(two, True)
    assert padded1["lstm_positions_per_step"] == 16 and padded2["lstm_positions_per_step"] == 11
    assert padded2["lstm_positions_per_token"] / padded1["lstm_positions_per_token"] == pytest.approx(22 / 32)
    # a layout whose LSTM skips padding does the same work with any number of workers
    assert lstm_work(one, False)["lstm_positions_per_step"] == lstm_work(two, False)["lstm_positions_per_step"] == 9
    assert lstm_work(one, None)["lstm_positions_per_step"] is None  # undeclared: unknown, not guessed


def _parallel_record(words_per_sec, workers, seed, threads=2, share=0.2, positions_per_token=None,
                     compile=False):
    from tests.records import record

    r = record(words_per_sec=words_per_sec, seed=seed)
    r["run"].update(workers=workers, scaling="strong", compile=compile, threads=threads)
    r["threads"] = threads
    if positions_per_token:
        r["metrics"]["work"] = {"lstm_positions_per_token": positions_per_token}
    if workers > 1:
        r["metrics"]["data_parallel"] = {"workers": workers, "global_batch_size": 20, "allreduce_share": share,
                                         "per_worker_batch_size": [20 // workers] * workers}
    return r


def test_the_report_computes_speedup_against_one_worker_with_the_same_threads():
    from lmbench.report.document import build
    from lmbench.report.scaling import scaling_rows

    records = ([_parallel_record(w, 1, i) for i, w in enumerate((1000, 1100, 900))]
               + [_parallel_record(w, 2, 10 + i, share=s) for i, (w, s) in enumerate(((1500, .1), (1600, .3), (1400, .2)))]
               + [_parallel_record(5000, 1, 20, threads=1)])  # another thread budget: not the baseline
    rows = {r["workers"]: r for r in scaling_rows(records)}
    assert rows[2]["speedup"] == pytest.approx(1.5) and rows[2]["efficiency"] == pytest.approx(0.75)
    assert rows[2]["allreduce_share"] == pytest.approx(0.2) and rows[1]["speedup"] == pytest.approx(1.0)
    assert rows[2]["per_worker_batch"] == "10" and rows[2]["global_batch"] == 20
    blocks, files = build(records, [], Path("/nonexistent"))
    assert ("h2", "Data-parallel scaling") in blocks and "scaling.svg" in files
    alone = [_parallel_record(1500, 2, 1)]  # no 1-worker twin: no speedup, said so
    assert scaling_rows(alone)[0]["speedup"] is None


def test_the_report_sets_the_work_ratio_and_the_equal_work_efficiency_beside_the_efficiency():
    from lmbench.report.scaling import scaling_rows, section

    # 2 workers computed 0.9x the positions per real token of 1 worker: 1.6x words/s is 1.44x the work
    records = [_parallel_record(1000, 1, 0, positions_per_token=1.25),
               _parallel_record(1600, 2, 1, positions_per_token=1.125)]
    two = next(r for r in scaling_rows(records) if r["workers"] == 2)
    assert two["efficiency"] == pytest.approx(0.8) and two["work_ratio"] == pytest.approx(0.9)
    assert two["equal_work_efficiency"] == pytest.approx(0.72)
    (_, _), (_, headers, rows, _), (_, note) = section(records)[0][:3]
    assert "Work ratio (N ÷ 1)" in headers and "Equal-work efficiency" in headers
    last = {h: text for h, (_, text) in zip(headers, rows[-1])}
    assert (last["Work ratio (N ÷ 1)"], last["Equal-work efficiency"]) == ("0.900", "72%")
    assert "Quote the equal-work efficiency" in note
    # records that do not count their work (written before lmbench recorded it): no ratio, no guess
    old = [_parallel_record(1000, 1, 0), _parallel_record(1600, 2, 1)]
    assert next(r for r in scaling_rows(old) if r["workers"] == 2)["equal_work_efficiency"] is None


def test_a_compiled_one_worker_run_is_not_the_baseline_of_an_eager_two_worker_run():
    from lmbench.report.scaling import scaling_rows

    compiled_one = _parallel_record(800, 1, 0, compile=True)
    eager_two = _parallel_record(1600, 2, 1)
    assert next(r for r in scaling_rows([compiled_one, eager_two]) if r["workers"] == 2)["speedup"] is None
    eager_one = _parallel_record(1000, 1, 2)
    rows = scaling_rows([compiled_one, eager_two, eager_one])
    assert next(r for r in rows if r["workers"] == 2)["speedup"] == pytest.approx(1.6)


def test_the_allreduce_share_times_both_legs_by_the_slowest_worker_and_keeps_the_wait_apart():
    from lmbench.run.runner import _combine_workers

    def worker(rank, without):  # the same synchronised leg on both; rank 1 computes faster alone
        legs = {"with_seconds": 1.0, "without_seconds": without, "share": 1.0 - without}
        return {"train_seconds": 2.0, "train_words_per_sec": 500.0, "timed_tokens": 1000, "flops_per_token": 1.0,
                "step_time_ms": {"median": 1.0, "p10": 1.0, "p90": 1.0}, "first_time_shapes_timed": 0,
                "data_parallel": {"rank": rank, "job_timed_tokens": 2000, "allreduce_ab": legs,
                                  "allreduce_share": legs["share"]}}

    per_rank = [worker(0, 0.77), worker(1, 0.68)]
    metrics = {**per_rank[0], "data_parallel": dict(per_rank[0]["data_parallel"])}
    _combine_workers(metrics, per_rank)
    dp = metrics["data_parallel"]
    # each worker's own share: 23% and 32%; rank 1's counts its 0.09 s wait for rank 0 as all-reduce
    assert [w["allreduce_share"] for w in dp["per_worker"]] == pytest.approx([0.23, 0.32])
    assert dp["allreduce_share"] == pytest.approx(0.23)  # not their mean, 0.275
    assert dp["imbalance"] == pytest.approx(0.77 / 0.68 - 1)


def test_runs_with_different_workers_are_different_cells_and_old_records_match_new_ones():
    from lmbench.runspec import record_identity

    one, two = _parallel_record(1000, 1, 0), _parallel_record(1000, 2, 1)
    old = _parallel_record(1000, 1, 2)
    del old["run"]["workers"], old["run"]["scaling"]  # written before --workers existed
    assert record_identity(one) != record_identity(two)
    assert record_identity(one) == record_identity(old)


@pytest.mark.parametrize("kw,needle", [
    (dict(nodes=2, rendezvous=None), "invalid rendezvous=None"),
    (dict(nodes=2, node_rank=2, rendezvous="h:1"), "invalid node_rank=2"),
    (dict(nodes=2, rendezvous="nohostport"), "invalid rendezvous='nohostport'"),
])
def test_bad_multi_machine_settings_are_refused(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        run_spec(make_config("tiny"), "torch", steps=5, threads=1, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in ENGINES if data_parallel(b).get("launcher_nodes")])
def test_two_machines_on_localhost_make_one_job(backend):
    # `lmbench run --nodes 2 --node-rank R --rendezvous HOST:PORT` on each machine; here both
    # "machines" are this one, one worker each
    from concurrent.futures import ThreadPoolExecutor

    port = launch.free_ports(1)[0]
    specs = [run_spec(make_config("tiny"), backend, steps=8, warmup=1, eval="valid", eval_batches=2, threads=1,
                      nodes=2, node_rank=n, rendezvous=f"127.0.0.1:{port}") for n in (0, 1)]
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(lambda s: run_isolated(s, timeout=300), specs))
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error") for r in records]
    dps = [r["metrics"]["data_parallel"] for r in records]
    assert [d["rank"] for d in dps] == [0, 1] and all(d["workers"] == 2 and d["nodes"] == 2 for d in dps)
    # each machine's record counts the whole job's tokens, of which it timed its own share
    assert dps[0]["job_timed_tokens"] == dps[1]["job_timed_tokens"] == sum(d["per_worker"][0]["timed_tokens"] for d in dps)
    assert "valid_ppl" in records[0]["metrics"] and "valid_ppl" not in records[1]["metrics"]


@pytest.mark.slow
def test_no_data_parallel_worker_times_a_shard_shape_for_the_first_time(two_worker_run):
    # sentence mode: every shard is trimmed to its own longest sentence, so the two workers
    # meet shapes the global batches do not show (9 first-time shapes per record before)
    r = two_worker_run("torch")
    assert r["status"] == "ok", r.get("error")
    assert r["config"]["mode"] == "sentence"
    m, steps = r["metrics"], TWO_WORKER_STEPS["torch"]
    assert m["first_time_shapes_timed"] == 0 and m["cold_shapes"]["count"] > 0
    assert [w["first_time_shapes_timed"] for w in m["data_parallel"]["per_worker"]] == [0, 0]
    # the job's work per step, all workers': packed input runs the LSTM over real tokens only
    work = m["work"]
    assert r["environment"]["lstm_computes_padding"] is False and work["lstm_computes_padding"] is False
    assert work["lstm_positions_per_step"] == work["real_tokens_per_step"] == m["timed_tokens"] / steps
    assert work["padded_positions_per_step"] == m["timed_padded_positions"] / steps > work["real_tokens_per_step"]
