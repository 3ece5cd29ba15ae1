"""Per-epoch training checkpoints: written atomically, refused when damaged.

A checkpoint is one .npz: the weights in the canonical layout plus a JSON document
(epoch reached, learning-rate schedule position, epoch log, wall time so far, the config
it belongs to). Checkpoints are taken at epoch boundaries, where the data position is
"start of the next epoch" (batches are a pure function of seed and epoch) and plain SGD
carries no optimizer state, so resuming a dropout-free run on the CPU reproduces the
uninterrupted run exactly. With dropout, the frameworks' own dropout RNG streams are
not captured: a resumed run is statistically, not bitwise, the same.
"""
from __future__ import annotations

from ..errors import UserError

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

META = "__meta__"
META_KEYS = ("epoch", "epoch_log", "wall_seconds", "time_to_target_seconds", "config", "backend")  # what resume reads


class CheckpointError(UserError, RuntimeError):
    pass


def save(path, weights: dict[str, np.ndarray], meta: dict) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it; a failed write
    (a full disk, a file size limit) removes the temporary file and keeps the previous
    checkpoint, and raises CheckpointError saying so."""
    from ..files import write_atomic

    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **weights, **{META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    try:
        write_atomic(path, buf.getvalue())
    except OSError as e:
        kept = "the previous checkpoint was kept: --resume continues from it" if path.exists() else "none was left"
        raise CheckpointError(f"could not write checkpoint {path} after epoch {meta.get('epoch')} "
                              f"({e.strerror}); {kept}. Free space there or give --checkpoint another path") from e


def load(path) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, meta); CheckpointError if the file is truncated or corrupt (zip CRCs)."""
    path = Path(path)
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}  # reading every member checks its CRC
        meta = json.loads(arrays.pop(META).tobytes())
        missing = [k for k in META_KEYS if k not in meta] if isinstance(meta, dict) else list(META_KEYS)
        if missing:  # a readable file that is not one of ours (or an older lmbench's)
            raise ValueError(f"its metadata lacks {', '.join(missing)}")
        bad = sorted(k for k, v in arrays.items() if not np.all(np.isfinite(v)))
        if bad:  # training from it would "diverge" at its first step and blame the learning rate
            raise ValueError(f"weights {', '.join(bad)} hold NaN or infinity")
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"checkpoint {path} is damaged or truncated ({type(e).__name__}: {e}); it was not "
            f"loaded. Delete it to train from the start, or pass --checkpoint with another file") from e
    return arrays, meta


def lock(path):
    """Hold `<checkpoint>.lock` for the life of the calling process: two workers never
    train one checkpoint at once (an orphan of a killed `bench` and its `--resume`, or two
    suites). Returns the descriptor (the lock goes with it, or with the process); raises
    CheckpointError naming the holder if another process has it."""
    import fcntl

    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CheckpointError(
                f"checkpoint {path} is being trained by process {holder} right now (it holds {lock_path}); "
                f"this run did not start. Wait for that run, stop it, or pass --checkpoint another file")
        try:  # the lock file may have been removed (unlock) between open and flock: retry on the new one
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_lock(path) -> bool:
    """Remove `<checkpoint>.lock` if no process holds it (its worker was killed: the kernel
    released the lock, the file stayed). True if one was removed."""
    import fcntl

    lock_path = Path(f"{path}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a live run holds it
    unlock(path, fd)
    return True


def unlock(path, fd: int) -> None:
    """Release the lock and remove the lock file (while still holding it, so no one else
    can be waiting on this inode and mistake it for free)."""
    Path(f"{path}.lock").unlink(missing_ok=True)
    os.close(fd)
