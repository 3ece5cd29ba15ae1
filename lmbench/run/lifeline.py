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
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

OWNER_FILE = ".lmbench-owner"  # in a temp dir of lmbench's: the pid of the process that made it
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
    if temp_dir is not None and temp_dir.name.startswith(("lmbench-run-", "lmbench-probe-")):
        shutil.rmtree(temp_dir, ignore_errors=True)
    os._exit(EXIT_ORPHANED)


def die_with_parent(temp_dir: str | os.PathLike | None = None, pipe_fd: int | None = None):
    """Arm both mechanisms for the calling process (call it first thing in the child, before
    anything that can block). Returns watch_pipe(fd): the progress pipe opened later is
    watched from then on."""
    parent = int(os.environ.pop(PARENT_PID_ENV, None) or os.getppid())  # popped: not for grandchildren
    temp_dir = Path(temp_dir) if temp_dir else None
    watched: list[int | None] = [None]

    def watch_pipe(fd: int) -> None:
        # our own descriptor of the pipe: the caller's may be closed (at exit, say) and its number reused
        watched[0] = os.dup(fd)

    if pipe_fd is not None:
        watch_pipe(pipe_fd)

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
            if _parent_gone(parent) or _pipe_closed(watched[0]):
                _die(temp_dir)
            threading.Event().wait(POLL_SECONDS)

    threading.Thread(target=watch, name="lmbench-lifeline", daemon=True).start()
    return watch_pipe


def open_progress(path: str | os.PathLike, temp_dir: str | os.PathLike | None = None) -> int:
    """Open the progress FIFO for writing without ever blocking: a FIFO whose reader is gone
    (the parent was killed before this child got here) would block a plain open forever.
    Non-blocking, the open fails at once (ENXIO) and the child ends like an orphan; the
    descriptor is made blocking again, so that a full pipe slows the writer instead of
    losing lines."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader; ENOENT: the parent's temp dir is gone already
        _die(Path(temp_dir) if temp_dir else None)
    os.set_blocking(fd, True)
    return fd


def preexec_die_with_parent(sig: int = signal.SIGKILL):
    """A Popen preexec_fn for a child that runs no lmbench code itself (a framework's
    launcher): the kernel sends it `sig` when this process dies, so a launcher never
    outlives a killed lmbench (its workers follow it: they watch their own parent).
    Checks the race PR_SET_PDEATHSIG cannot cover: this process already gone."""
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def arm():
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(EXIT_ORPHANED)
    return arm


def _owner_gone(directory: Path) -> bool:
    try:
        pid = int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False  # being made right now, or not lmbench's: not ours to remove
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def sweep_orphans(prefix: str, where: str | os.PathLike | None = None) -> list[Path]:
    """Remove the `prefix`* temp dirs whose owner died without cleaning up (SIGKILL, the OOM
    killer, a launcher killed before any worker could clean up); returns them."""
    swept = []
    for directory in Path(where or tempfile.gettempdir()).glob(f"{prefix}*"):
        if directory.is_dir() and not directory.is_symlink() and _owner_gone(directory):
            shutil.rmtree(directory, ignore_errors=True)
            swept.append(directory)
    return swept


@contextmanager
def owned_temp_dir(prefix: str):
    """A TemporaryDirectory that names its owner, after sweeping the ones of dead owners: what
    a kill -9 leaves behind is removed by the next lmbench that starts children."""
    sweep_orphans(prefix)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        Path(tmp, OWNER_FILE).write_text(str(os.getpid()))
        yield tmp
