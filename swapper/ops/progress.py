"""Progress that reads well on a terminal (a tqdm bar) and in a log file (a plain line now and then).

A cluster job's stdout and stderr go to a file, where a bar is either invisible or thousands of
carriage-return frames; there, progress is a log line every ``interval_s`` seconds and one at the end.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``0:00:07``, ``1:02:03``, ``2d 3:04:05``; ``?`` when unknown (not finite)."""
    if not math.isfinite(seconds):
        return "?"
    days, rest = divmod(int(round(max(seconds, 0.0))), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


class LogProgress:
    """A tqdm-like counter (``update``, ``close``, ``with``) that logs instead of drawing.

    Every ``interval_s`` seconds: ``<desc>: 120/2000 (6%), 4.2 frame/s, elapsed 0:00:29, ETA 0:07:28``;
    at ``close`` one last line with the count and the average rate. ``total=None``: no percentage or ETA.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        interval_s: float = 30.0,
        disable: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval_s = interval_s
        self.disable = disable
        self.n = 0
        self._clock = clock
        self._start = self._last_time = clock()
        self._last_n = 0
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if not self.disable and now - self._last_time >= self.interval_s:
            rate = (self.n - self._last_n) / max(now - self._last_time, 1e-9)  # recent: what the ETA needs
            self._log(now, rate)
            self._last_time, self._last_n = now, self.n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            now = self._clock()
            self._log(now, self.n / max(now - self._start, 1e-9), done=True)

    def _log(self, now: float, rate: float, done: bool = False) -> None:
        count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {count}" if self.desc else count, f"{rate:.3g} {self.unit}/s"]
        parts.append(f"elapsed {format_duration(now - self._start)}")
        if not done and self.total:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate if rate > 0 else math.inf)}")
        log.info("%s%s", ", ".join(parts), " (done)" if done else "")

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tqdm_or_log(
    total: int | None, desc: str = "", unit: str = "it", disable: bool = False, interval_s: float = 30.0
) -> Any:
    """A tqdm bar when stderr (where tqdm draws) is a terminal, else a ``LogProgress``; same interface."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc or None, unit=unit, disable=disable)
    return LogProgress(total, desc, unit, interval_s=interval_s, disable=disable)
