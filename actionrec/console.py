"""What a long job shows on stderr: one progress-bar helper, lines that never land on a bar, skipped files.

Progress bars are drawn with tqdm on stderr and vanish when closed. A line written while a bar is drawn goes
through ``tqdm.write``, which clears the bar, prints the line on its own and draws the bar again, so a warning is
never glued onto a bar. Skipped files are always said (``--quiet`` hides progress, never a file that was left out).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field


def stderr_line(message: str) -> None:
    """One line on stderr, on its own line even while a progress bar is drawn."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def progress_bar(desc: str, unit: str, enabled: bool = True, total: int = 0):
    """A tqdm bar on stderr that leaves nothing behind when closed; a no-op bar when not `enabled`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, leave=False)


def progress_callback(desc: str, unit: str, enabled: bool = True) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (done, total) callback drawing a progress bar, and a function closing it."""
    bar = progress_bar(desc, unit, enabled)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


@dataclass
class Skipped:
    """Files a batch job left out: each is said on one stderr line when it happens and kept for the record."""

    say: Callable[[str], None] = stderr_line
    files: list[dict] = field(default_factory=list)

    def __call__(self, video: str, message: str) -> None:
        """The `on_error(video, message)` callback of feature extraction and the engine."""
        self.files.append({"video": video, "error": message})
        self.say(f"skipped: {message if video in message else f'{video}: {message}'}")

    @property
    def videos(self) -> list[str]:
        return [entry["video"] for entry in self.files]
