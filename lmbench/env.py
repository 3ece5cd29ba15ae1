"""Facts about the machine and the checkout that go into every run record."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (/proc/cpuinfo "flags"); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute in bfloat16


def bf16_hardware(flags: set[str] | None = None) -> dict:
    """Whether this CPU computes bfloat16 in hardware: {"bf16_hardware": bool, "cpu_bf16_flags":
    [...]}. Without those flags frameworks still run bf16, emulated (converted to float32 and
    back), so it is correct but no speed claim holds for it."""
    found = sorted(f for f in BF16_FLAGS if f in (cpu_flags() if flags is None else flags))
    return {"bf16_hardware": bool(found), "cpu_bf16_flags": found}


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout lmbench runs from; (None, None) outside git."""
    path = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


# The instruction sets the frameworks' kernels dispatch on (oneDNN, MKL, XLA, Eigen): two
# CPUs of one model name that differ here run different GEMM code at different speeds.
SPEED_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
               "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
               "asimd", "sve", "sve2", "bf16", "i8mm")


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    out = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def cpu_facts(info: dict | None = None) -> dict:
    """What makes two CPUs of one model name run at different speeds: vendor, family, model,
    stepping (x86; on ARM the implementer, architecture, part and variant) and the ISA flags
    of SPEED_FLAGS present. Unknown fields are None."""
    info = _cpuinfo() if info is None else info

    def num(*keys):
        for k in keys:
            if k in info:
                try:
                    return int(info[k], 16) if info[k].lower().startswith("0x") else int(info[k])
                except ValueError:
                    return info[k]
        return None
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {"vendor": info.get("vendor_id") or info.get("CPU implementer"),
            "family": num("cpu family", "CPU architecture"), "model": num("model", "CPU part"),
            "stepping": num("stepping", "CPU variant"), "isa": sorted(f for f in SPEED_FLAGS if f in flags)}


@functools.lru_cache(maxsize=1)
def gpu_facts() -> dict | None:
    """The first NVIDIA GPU's name and compute capability (from nvidia-smi, no framework
    import), the number of GPUs; None where there is no GPU or no nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not rows:
        return None
    name, cap = (rows[0] + [None])[:2]
    return {"name": name, "compute_capability": cap, "count": len(rows)}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def machine_key(device_name: str | None = None, facts: dict | None = None, gpu: dict | None | bool = True,
                model_name: str | None = None, cores: int | None = None) -> str:
    """A filesystem-safe name for 'this kind of machine', used to file results and to pick a
    baseline: CPU model name and core count, then family/model/stepping and a short hash of
    the vendor and the ISA flags kernels dispatch on (the same model name covers several CPU
    generations), then, with a GPU, its name and compute capability. E.g.
    amd-epyc-2cpu-f25m17s1-1a2b. `machine_key("NAME")` is the old key of a device name
    (records before the facts were recorded: see record_machine_key)."""
    if device_name:
        return _slug(device_name)
    facts = cpu_facts() if facts is None else facts
    base = f"{model_name or cpu_model()}-{cores or cpu_count()}cpu"
    generation = "".join(f"{tag}{facts.get(field)}" for tag, field in (("f", "family"), ("m", "model"),
                                                                       ("s", "stepping"))
                         if facts.get(field) is not None)
    digest = hashlib.sha256(f"{facts.get('vendor')}|{','.join(facts.get('isa') or [])}".encode()).hexdigest()[:4]
    key = f"{base}-{generation}-{digest}" if generation else f"{base}-{digest}"
    gpu = gpu_facts() if gpu is True else gpu
    if gpu:
        key += f"-{gpu['name']}-sm{str(gpu.get('compute_capability') or 'unknown').replace('.', '')}"
    return _slug(key)


def record_machine_key(record: dict) -> str:
    """The machine key a record was made under: the one it carries, or for an older record
    (no machine facts recorded) the old key of its CPU model and core count, which is all it
    says about its machine."""
    return record.get("machine_key") or _slug(f"{record.get('cpu_model')}-{record.get('cpu_count')}cpu")


def host() -> dict:
    gpu = gpu_facts()
    return {
        "hostname": socket.gethostname(),
        "machine_key": machine_key(),
        "cpu_model": cpu_model(),
        "cpu_count": cpu_count(),
        "cpu_facts": cpu_facts(),
        **({"gpu_facts": gpu} if gpu else {}),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        **bf16_hardware(),
    }


def has_gpu() -> bool:
    """An NVIDIA device is present (checked without importing any framework)."""
    import shutil

    if any(Path("/dev").glob("nvidia[0-9]*")):
        return True
    smi = shutil.which("nvidia-smi")
    try:
        return bool(smi) and subprocess.run([smi, "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# A run is "busy" when, over its timed window, other processes used more than this share of
# the machine's CPU time (one core in ten: a 10% slowdown is what `compare` must detect) or
# the hypervisor took more than this share from the virtual CPUs.
BUSY_OTHER_SHARE = 0.10
BUSY_STEAL_SHARE = 0.05


def _proc_stat() -> tuple[int, int, int] | None:
    """(total, idle, steal) jiffies of all CPUs from /proc/stat's "cpu" line; None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user/nice]
    fields += [0] * (8 - len(fields))
    return sum(fields[:8]), fields[3] + fields[4], fields[7]


def _cpu_seconds_of(pids) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        except (OSError, IndexError):
            continue  # ended in between
        total += (int(rest[11]) + int(rest[12])) / tick  # utime, stime
    return total


def _ours() -> list[int]:
    """This process and its siblings (the other ranks of a data-parallel run share the parent)
    with their children: the CPU time a run spends on itself."""
    parent, me = os.getppid(), os.getpid()
    procs = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return [me]
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    procs[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    ours = {pid for pid, ppid in procs.items() if ppid == parent and parent > 1} | {me}
    grew = True
    while grew:
        more = {pid for pid, ppid in procs.items() if ppid in ours} - ours
        ours |= more
        grew = bool(more)
    return sorted(ours)


def busy_snapshot() -> dict:
    """A cheap look at how busy the machine is (a few ms): 1-minute load average, /proc/stat's
    total, idle and steal jiffies, and the CPU seconds this run's own processes have used."""
    stat = _proc_stat()
    return {"monotonic": time.monotonic(), "load_average": round(os.getloadavg()[0], 2),
            "stat": list(stat) if stat else None,
            "own_cpu_seconds": _cpu_seconds_of(_ours()) if stat else None,
            "tick": os.sysconf("SC_CLK_TCK")}


def busy_entry(start: dict, end: dict) -> dict:
    """What the machine did around a timed window, for the record: load average at its start
    and end, the share of CPU time the hypervisor stole and that other processes used over it
    (machine-wide busy time minus this run's own), and busy/why by BUSY_OTHER_SHARE and
    BUSY_STEAL_SHARE. The load average includes the run itself, so it is shown, not judged."""
    entry = {"load_average": [start["load_average"], end["load_average"]], "steal_share": None,
             "other_cpu_share": None, "busy": None, "why": "no /proc/stat here: busy unknown"}
    if not (start.get("stat") and end.get("stat")):
        return entry
    total, idle, steal = (b - a for a, b in zip(start["stat"], end["stat"]))
    if total <= 0:
        entry["why"] = "window too short for /proc/stat's clock ticks: busy unknown"
        return entry
    own = (end["own_cpu_seconds"] - start["own_cpu_seconds"]) * start["tick"]
    entry["steal_share"] = round(steal / total, 4)
    entry["other_cpu_share"] = round(min(1.0, max(0.0, (total - idle - steal - own) / total)), 4)
    why = []
    if entry["other_cpu_share"] > BUSY_OTHER_SHARE:
        why.append(f"other processes used {entry['other_cpu_share']:.0%} of the machine's CPU time "
                   f"(> {BUSY_OTHER_SHARE:.0%})")
    if entry["steal_share"] > BUSY_STEAL_SHARE:
        why.append(f"the hypervisor stole {entry['steal_share']:.0%} of it (> {BUSY_STEAL_SHARE:.0%})")
    entry["busy"] = bool(why)
    entry["why"] = "; ".join(why) or (f"quiet: others {entry['other_cpu_share']:.0%}, steal "
                                      f"{entry['steal_share']:.0%} of the CPU time")
    return entry
