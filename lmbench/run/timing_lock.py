"""Who else is timing on this machine: two lmbench processes measuring at once time each
other's load, and neither number means what it says.

Every `run` and `bench` holds an exclusive flock on a file of its own in a shared runtime
directory (TMPDIR/lmbench-timing/<pid>) for as long as it times; `others()` lists the files
whose lock is held by a live process. A lock dies with its process (kill -9 included), so
a stale file is recognised as such and removed; nothing here ever blocks or fails a run.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from pathlib import Path


def _dir() -> Path:
    return Path(tempfile.gettempdir()) / "lmbench-timing"


@contextlib.contextmanager
def timing(what: str):
    """Announce, for the block's duration, that this process times `what`."""
    path, fd = _dir() / str(os.getpid()), None
    try:
        path.parent.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            path.parent.chmod(0o1777)  # every user's lmbench announces itself here
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, what.encode()[:500])
    except OSError:  # an unwritable TMPDIR: no announcement, the run itself is unaffected
        pass
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def others() -> list[str]:
    """What every other live lmbench process on this machine is timing right now."""
    found = []
    for path in sorted(_dir().glob("[0-9]*")) if _dir().is_dir() else []:
        if path.name == str(os.getpid()):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: its process is alive and timing
            found.append(f"pid {path.name}: {os.pread(fd, 500, 0).decode(errors='replace') or 'lmbench'}")
        except OSError:
            pass
        else:  # nobody holds it: left by a killed process
            with contextlib.suppress(OSError):
                path.unlink()
        finally:
            os.close(fd)
    return found


def warning() -> str | None:
    """A warning for the record and the screen, or None when this lmbench times alone."""
    busy = others()
    if not busy:
        return None
    return (f"another lmbench was timing on this machine at the same time ({'; '.join(busy)}): each run's "
            f"numbers include the other's load")


def command_line() -> str:
    return "lmbench " + " ".join(sys.argv[1:])
