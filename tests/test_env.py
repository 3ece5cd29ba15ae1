"""lmbench.env: a machine key that means one machine kind; how busy the machine was."""
from __future__ import annotations

import json

from records import record

from lmbench import env
from lmbench.cli import main as cli_main

ZEN4 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "model": "17", "stepping": "1",
        "flags": "fpu sse avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni sha_ni"}
ZEN5 = {**ZEN4, "cpu family": "26", "model": "2", "stepping": "0"}


def key(info, **kw):
    return env.machine_key(facts=env.cpu_facts(info), gpu=None, model_name="AMD EPYC", cores=2, **kw)


def test_one_model_name_of_two_cpu_generations_gets_two_keys():
    assert key(ZEN4).startswith("amd-epyc-2cpu-f25m17s1-") and key(ZEN5).startswith("amd-epyc-2cpu-f26m2s0-")
    assert key(ZEN4) == key(dict(ZEN4))  # the same facts: the same key, every time


def test_the_isa_flags_frameworks_dispatch_on_change_the_key_and_others_do_not():
    no_bf16 = {**ZEN4, "flags": ZEN4["flags"].replace("avx512_bf16", "")}
    assert key(no_bf16) != key(ZEN4)
    assert key({**ZEN4, "flags": ZEN4["flags"].replace("sha_ni", "")}) == key(ZEN4)  # not a kernel's choice
    assert env.cpu_facts(ZEN4)["isa"] == ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f",
                                          "avx512vl", "fma"]


def test_arm_facts_are_read_from_their_own_fields():
    arm = {"CPU implementer": "0x41", "CPU architecture": "8", "CPU variant": "0x1", "CPU part": "0xd0c",
           "Features": "fp asimd sve bf16"}
    assert env.cpu_facts(arm) == {"vendor": "0x41", "family": 8, "model": 0xd0c, "stepping": 1,
                                  "isa": ["asimd", "bf16", "sve"]}


def test_a_gpu_adds_its_name_and_compute_capability():
    k = env.machine_key(facts=env.cpu_facts(ZEN4), model_name="AMD EPYC", cores=2,
                        gpu={"name": "NVIDIA H200", "compute_capability": "9.0"})
    assert k.startswith("amd-epyc-2cpu-f25m17s1-") and k.endswith("-nvidia-h200-sm90")


def test_records_keep_their_own_key_and_older_ones_read_as_they_were_filed():
    old = record()  # no machine facts recorded: the old key of its model name and cores
    assert env.record_machine_key(old) == "test-cpu-2cpu" == env.machine_key("Test CPU-2cpu")
    assert env.record_machine_key({**old, "machine_key": "x-2cpu-f1m2s3-abcd"}) == "x-2cpu-f1m2s3-abcd"


def test_compare_refuses_across_machine_keys_unless_forced(tmp_path, capsys):
    base = [record(seed=i, words_per_sec=1000 + i) for i in range(5)]  # older records: old key
    cand = [{**r, "machine_key": key(ZEN4)} for r in base]
    for path, records in (("b.jsonl", base), ("c.jsonl", cand)):
        (tmp_path / path).write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["compare", str(tmp_path / "b.jsonl"), str(tmp_path / "c.jsonl")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "different machine kinds" in err and "test-cpu-2cpu" in err and key(ZEN4) in err
    assert cli_main(argv + ["--force"]) == 0


def snap(stat, own, load=0.5):
    return {"monotonic": 0.0, "load_average": load, "stat": stat, "own_cpu_seconds": own, "tick": 100}


def test_other_processes_cpu_time_over_the_window_makes_a_run_busy():
    # 2 CPUs over 10 s = 2000 ticks; 1400 busy, of which this run 10 s (1000 ticks): others 400
    start, end = snap([0, 0, 0], 0.0), snap([2000, 600, 0], 10.0, load=2.5)
    entry = env.busy_entry(start, end)
    assert entry["other_cpu_share"] == 0.2 and entry["steal_share"] == 0.0 and entry["busy"] is True
    assert entry["load_average"] == [0.5, 2.5]
    assert entry["why"] == "other processes used 20% of the machine's CPU time (> 10%)"


def test_a_run_alone_on_the_machine_is_quiet_and_steal_counts_apart():
    quiet = env.busy_entry(snap([0, 0, 0], 0.0), snap([2000, 980, 0], 10.0))
    assert quiet["busy"] is False and quiet["other_cpu_share"] == 0.01 and quiet["why"].startswith("quiet")
    stolen = env.busy_entry(snap([0, 0, 0], 0.0), snap([2000, 800, 200], 10.0))
    assert stolen["busy"] is True and stolen["steal_share"] == 0.1 and stolen["other_cpu_share"] == 0.0
    assert "the hypervisor stole 10%" in stolen["why"]


def test_busy_is_unknown_where_it_cannot_be_measured():
    assert env.busy_entry(snap(None, None), snap(None, None))["busy"] is None
    assert env.busy_entry(snap([5, 1, 0], 0.0), snap([5, 1, 0], 0.0))["busy"] is None  # no tick elapsed


def test_a_snapshot_of_this_machine_reads_proc_stat_and_this_process():
    s = env.busy_snapshot()
    total, idle, steal = s["stat"]
    assert total >= idle >= 0 and steal >= 0 and s["own_cpu_seconds"] >= 0 and s["load_average"] >= 0
