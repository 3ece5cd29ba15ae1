"""A child process that ends itself when its parent dies, and takes its temp dir with it.

A worker runs in its own session (so that a timeout can kill its whole process group)
and so is re-parented to init if the parent is killed with SIGKILL: its timeout and its
temp-dir cleanup lived in the dead parent. Two things end it instead:
- Linux's PR_SET_PDEATHSIG, which signals the child the moment its parent exits;
- a watchdog thread, for other platforms and for a parent that died before the child
  armed PR_SET_PDEATHSIG: it polls the parent pid and the progress pipe (a pipe whose
  reading end is gone polls as an error).
Either way the child removes the run's temp dir (the parent's `lmbench-run-*` dir) and
exits at once, without unwinding a framework's threads.
"""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import sys
import threading
from pathlib import Path

PARENT_PID_ENV = "LMBENCH_PARENT_PID"  # set by the parent: the child's getppid() can be init already
PR_SET_PDEATHSIG = 1
DEATH_SIGNAL = signal.SIGUSR2  # not SIGTERM: a framework may install its own SIGTERM handler
POLL_SECONDS = 0.2
EXIT_ORPHANED = 3


def _parent_gone(parent: int) -> bool:
    return os.getppid() != parent


def _pipe_closed(fd: int | None) -> bool:
    if fd is None or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: POLLERR (no reader left) is always reported
    return any(ev & select.POLLERR for _, ev in poller.poll(0))


def _die(temp_dir: Path | None) -> None:
    if temp_dir is not None and temp_dir.name.startswith("lmbench-run-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    os._exit(EXIT_ORPHANED)


def die_with_parent(temp_dir: str | os.PathLike | None = None, pipe_fd: int | None = None) -> None:
    """Arm both mechanisms for the calling process (call it first thing in the child)."""
    parent = int(os.environ.pop(PARENT_PID_ENV, None) or os.getppid())  # popped: not for grandchildren
    temp_dir = Path(temp_dir) if temp_dir else None
    # our own descriptor of the pipe: the caller's may be closed (at exit, say) and its number reused
    pipe_fd = os.dup(pipe_fd) if pipe_fd is not None else None

    def on_death_signal(signum, frame):
        if _parent_gone(parent):  # also sent when the parent's *thread* that forked us exits
            _die(temp_dir)

    if sys.platform.startswith("linux"):
        signal.signal(DEATH_SIGNAL, on_death_signal)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if _parent_gone(parent):  # died before we armed anything
        _die(temp_dir)

    def watch():
        while True:
            if _parent_gone(parent) or _pipe_closed(pipe_fd):
                _die(temp_dir)
            threading.Event().wait(POLL_SECONDS)

    threading.Thread(target=watch, name="lmbench-lifeline", daemon=True).start()
