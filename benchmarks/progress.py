"""The progress line of ``edgebert bench``."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, stream: Any = None) -> None:
        self.total, self.done, self.enabled = max(total, 1), 0, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def note(self, message: str) -> None:
        if self.enabled:
            self._clear()
            print(f"edgebert bench: {message}", file=self.stream, flush=True)

    def update(self, label: str, advance: int = 0) -> None:
        self.done = min(self.total, self.done + advance)
        if not self.enabled:
            return
        width = 28
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {time.perf_counter() - self.start:6.0f}s {label}"
        if self.tty:
            print("\r" + text[:150].ljust(150), end="", file=self.stream, flush=True)
        elif advance:
            print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty:
            print("\r" + " " * 150 + "\r", end="", file=self.stream, flush=True)

    def close(self) -> None:
        self._clear()
