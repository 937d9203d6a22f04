"""The one exception type the CLI turns into a single line on stderr, and the one place that does it."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable


class ActionrecError(Exception):
    """A problem the user can fix: the message names the file (or thing) and says how to fix it."""


def say_error(message: str) -> None:
    """One line on stderr: `actionrec: error: ...`."""
    print(f"actionrec: error: {message}", file=sys.stderr)


def exit_status(command: Callable[[], int]) -> int:
    """Run a command's body and return its exit status: an ActionrecError is one line on stderr and status 2, Ctrl-C
    one line and 130 (the shell's). The one error handler at exit of `actionrec` and `actionrec serve`."""
    try:
        return command()
    except ActionrecError as err:
        say_error(str(err))
        return 2
    except KeyboardInterrupt:
        say_error("interrupted")
        return 130


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A RuntimeWarning, once per process per message."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
