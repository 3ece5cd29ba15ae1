"""One base class for every error that is the user's to fix: `lmbench` prints its message
in one line (no traceback) and exits with status 2. Each module keeps its own subclass, so
that a message names where the problem is (config, suite, results, data, backend)."""
from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing prerequisite; the message names the problem and the fix."""


def did_you_mean(word: str, allowed) -> str:
    """ " (did you mean 'small'?)" for the closest allowed value to a mistyped one, else ""."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
