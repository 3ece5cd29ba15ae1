"""Starting the processes of a run: one worker, or N through the framework's own launcher.

Every run, single-process or data-parallel, is `python -m lmbench.run.worker SPEC RESULT PROGRESS`
(`lmbench verify` starts `lmbench.run.probe` the same way). PROGRESS is a FIFO in the run's temp
dir: each worker writes its progress lines to it (one write each, atomic below PIPE_BUF) and
ends itself when the parent's reading end closes (lmbench.run.lifeline). A FIFO, not an inherited
descriptor, because launchers do not pass descriptors on to the workers they start. With N
workers each rank writes RESULT with its rank in the name (`result_path`).

How N workers start is the backend module's DATA_PARALLEL["launcher"], the argv after the
Python executable, to which "lmbench.run.worker ARGS" is appended (for several machines,
DATA_PARALLEL["launcher_nodes"], run on each with its machine rank and machine 0's address):

    lmbench ── python -m torch.distributed.run --nproc-per-node=2 -m ─┬─ rank 0: lmbench.run.worker
      (own session)                                                    └─ rank 1: lmbench.run.worker

Launchers start workers in sessions of their own and stop the others when one fails. A
launcher dies with this process (PR_SET_PDEATHSIG, lmbench.run.lifeline.preexec_die_with_parent),
and its workers with it. A
backend without a launcher (None: TensorFlow has none) gets its N processes from here,
each told its rank, the number of workers and a free localhost port per worker
(RANK_ENV, WORKERS_ENV, PORTS_ENV); then this module stops the others when one fails.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ..backend import data_parallel
from .lifeline import PARENT_PID_ENV, preexec_die_with_parent

RANK_ENV, WORKERS_ENV, PORTS_ENV = "LMBENCH_RANK", "LMBENCH_WORKERS", "LMBENCH_PORTS"


def result_path(result: Path | str, rank: int, workers: int) -> Path:
    """Where worker `rank` writes its result: RESULT itself when it is the only worker."""
    result = Path(result)
    return result if workers == 1 else result.with_name(f"{result.stem}.rank{rank}{result.suffix}")


def free_ports(n: int) -> list[int]:
    """n localhost ports free right now (held together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _descendants(pids: list[int]) -> list[int]:
    """Every live descendant of `pids` (Linux /proc; [] elsewhere), found before killing:
    launchers put workers in sessions of their own, out of reach of a process-group kill."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def describe_exit(rc: int) -> str:
    if rc < 0:
        sig = signal.Signals(-rc).name
        return f"died from {sig}" + (" (killed: out of memory?)" if -rc == signal.SIGKILL else "")
    return f"exited with status {rc}"


class Job:
    """The processes of one run: a single worker, a launcher, or N workers started here."""

    def __init__(self, procs: list[subprocess.Popen], launcher: str | None):
        self.procs, self.launcher = procs, launcher
        self.stopped: set[int] = set()  # pids this Job killed itself: not a cause, a consequence

    def poll(self) -> bool:
        """True once every process has exited. Without a launcher, a worker that failed
        takes the others down (a launcher does that itself)."""
        codes = [p.poll() for p in self.procs]
        if self.launcher is None and any(c not in (None, 0) for c in codes) and None in codes:
            self.kill()
            return True
        return None not in codes

    def kill(self) -> None:
        """SIGKILL every process of the run and anything they started; reap them."""
        pids = [p.pid for p in self.procs if p.poll() is None]
        self.stopped.update(pids)
        for pid in _descendants(pids) + pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()

    def exits(self) -> str:
        """How the processes ended, for a failed run's record."""
        if self.launcher is not None:
            return f"the launcher ({self.launcher}) {describe_exit(self.procs[0].returncode)}"
        if len(self.procs) == 1:
            return f"worker {describe_exit(self.procs[0].returncode)}"
        return "; ".join(f"worker rank {r} " + ("was stopped by lmbench when another ended" if p.pid in self.stopped
                                                  else describe_exit(p.returncode))
                         for r, p in enumerate(self.procs))


def start(module: str, args: list, backend: str, workers: int, tmp: Path, output,
          python: str = sys.executable, nodes: int = 1, node_rank: int = 0, rendezvous: str | None = None) -> Job:
    """Start `python -m module ARGS` as one process or as `workers` data-parallel workers of
    `backend` on this machine -- machine `node_rank` of `nodes`, which meet at `rendezvous`
    (host:port of machine 0) through DATA_PARALLEL["launcher_nodes"]; every process's
    stdout and stderr go to `output` (a file)."""
    argv = [str(a) for a in args]
    common = dict(stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True)
    if workers == 1 and nodes == 1:
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        return Job([subprocess.Popen([python, "-m", module, *argv], env=env, **common)], None)
    declared = data_parallel(backend)
    if declared is None:
        raise ValueError(f"backend {backend!r} declares no DATA_PARALLEL")  # run_spec checks first
    template = declared.get("launcher_nodes") if nodes > 1 else declared.get("launcher")
    if nodes > 1 and not template:
        raise ValueError(f"backend {backend!r} declares no launcher_nodes")  # run_spec checks first
    if template:
        log_dir = Path(tmp, "logs")
        log_dir.mkdir(exist_ok=True)
        host, _, port = (rendezvous or "").rpartition(":")
        fill = dict(workers=workers, python=python, log_dir=log_dir, port=free_ports(1)[0], nodes=nodes,
                    node_rank=node_rank, rendezvous=rendezvous, rendezvous_host=host, rendezvous_port=port)
        launcher = [str(a).format(**fill) for a in template]
        # no PARENT_PID_ENV: a worker's parent is the launcher, which it watches instead; the
        # launcher runs no lmbench code, so the kernel ends it with this process
        proc = subprocess.Popen([python, *launcher, module, *argv], env=dict(os.environ),
                                preexec_fn=preexec_die_with_parent(), **common)
        return Job([proc], launcher[1] if launcher[0] == "-m" else launcher[0])
    ports = ",".join(map(str, free_ports(workers)))
    procs = []
    for rank in range(workers):
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid()), RANK_ENV: str(rank),
               WORKERS_ENV: str(workers), PORTS_ENV: ports}
        procs.append(subprocess.Popen([python, "-m", module, *argv], env=env, **common))
    return Job(procs, None)
