"""Facts about the machine and the checkout that go into every run record."""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
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


def machine_key(device_name: str | None = None) -> str:
    """A filesystem-safe name for 'this kind of machine': host CPU model and core count,
    or the GPU name; used to file results and to pick a baseline."""
    base = device_name or f"{cpu_model()}-{cpu_count()}cpu"
    return re.sub(r"[^A-Za-z0-9.]+", "-", base).strip("-").lower()


def host() -> dict:
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": cpu_count(),
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
