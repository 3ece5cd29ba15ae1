"""Writing a whole file or nothing: what `peak`, `history`, `verify --out` (and the report)
write is replaced in one step, never left empty or half-written by a full disk."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file beside it, renamed over `path` once
    complete. On any failure (a full disk, a file size limit) the temporary file is removed,
    `path` is left as it was, and OSError names `path`."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it: mkstemp's 0600 hides it from others
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(tmp, path)
    except OSError as e:
        if fd is not None:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, f"{e.strerror or e}; nothing was written", str(path)) from e
