"""One base class for every error that is the user's to fix: `lmbench` prints its message
in one line (no traceback) and exits with status 2. Each module keeps its own subclass, so
that a message names where the problem is (config, suite, results, data, backend)."""
from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite; the message names the problem and the fix."""
