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

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

META = "__meta__"


class CheckpointError(RuntimeError):
    pass


def save(path, weights: dict[str, np.ndarray], meta: dict) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **weights, **{META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, meta); CheckpointError if the file is truncated or corrupt (zip CRCs)."""
    path = Path(path)
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}  # reading every member checks its CRC
        meta = json.loads(arrays.pop(META).tobytes())
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"checkpoint {path} is damaged or truncated ({type(e).__name__}: {e}); it was not "
            f"loaded. Delete it to train from the start, or pass --checkpoint with another file") from e
    return arrays, meta
