"""Where a training writes: folders checked writable before any work, and the run directory claimed with a lock.

A finished run directory (``config.json`` is written last, so it marks a finished run) is not replaced unless the
caller forces it. An unfinished one is taken over when it was left by the same command: ``OUT/.lock`` records the
recipe (configuration and data) of the training that holds or last held the directory, so a rerun after a kill, or
a restarted job, goes on where it was. Any other content is refused, so no one's files are overwritten by
mistake. The lock (``fcntl.flock`` on ``OUT/.lock``, released by the kernel when the process dies) keeps two
trainings out of one directory.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ActionrecError
from ..models.runs import is_run_dir

LOCK_NAME = ".lock"


def writable_dir(path: str | os.PathLike, what: str, fix: str) -> Path:
    """`path`, created if needed, after checking that a file can be written in it (one line saying `fix` if not)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ActionrecError(f"{path}: the {what} is not writable ({err.strerror or err}); {fix}") from None
    return path


def _check_takeover(out: Path, previous: str, recipe: str, force: bool, say: Callable[[str], None]) -> None:
    """Refuse to write over a finished run or foreign files unless forced; say when an unfinished run is taken over."""
    contents = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    if not contents:
        return
    if force:
        say(f"{out}: --force: replacing what is there ({', '.join(contents[:3])}{', ...' if len(contents) > 3 else ''})")
        return
    if is_run_dir(out):
        raise ActionrecError(f"{out}: holds a finished run; pass --force to replace it, or choose another --out")
    if previous != recipe:
        what = "an unfinished run of another training" if previous else f"files that are not a run ({contents[0]}, ...)"
        raise ActionrecError(f"{out}: holds {what}; pass --force to replace it, or choose another --out")
    say(f"{out}: taking over the unfinished run left by the same command")


@contextmanager
def claim_run_dir(out: str | os.PathLike, recipe: str, force: bool = False,
                  say: Callable[[str], None] = lambda m: None) -> Iterator[Path]:
    """Hold `out` for one training (writable, locked, not someone else's) for the duration of the block."""
    out = writable_dir(out, "run directory", "choose another --out")
    try:
        lock = open(out / LOCK_NAME, "a+", encoding="utf-8")
    except OSError as err:
        raise ActionrecError(f"{out}/{LOCK_NAME}: cannot be opened ({err.strerror}); choose another --out") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ActionrecError(f"{out}: another training is writing this run directory (it holds {out / LOCK_NAME}); "
                                 "wait for it to finish, or choose another --out") from None
        try:
            lock.seek(0)
            _check_takeover(out, lock.read().strip(), recipe, force, say)
            lock.seek(0)
            lock.truncate()
            lock.write(recipe + "\n")
            lock.flush()
            yield out
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
