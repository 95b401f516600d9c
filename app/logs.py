"""What an operator reads: third-party libraries only at WARNING (unless GLINT_LOG_LEVEL=DEBUG), and
a warning that repeats (a dependency that is away makes its client log the same line many times a
second) collapsed to one line per interval, carrying how many like it were held back."""

from __future__ import annotations

import logging
import time
from typing import Callable

REPEAT_INTERVAL = 10.0


class RepeatFilter(logging.Filter):
    """Lets through the first WARNING-or-worse record of each kind (logger, level, message
    template) per interval; the next one after the interval carries `repeated`, the number held
    back meanwhile. Records below WARNING always pass."""

    def __init__(self, interval: float = REPEAT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # kind -> [window start, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.repeated = seen[1]
        if len(self._seen) > 1000:  # kinds are message templates, but bound it anyway
            self._seen.clear()
        self._seen[kind] = [now, 0]
        return True


def configure(handler: logging.Handler, level: str) -> None:
    """glint's loggers at `level`; everyone else's at WARNING unless level is DEBUG; repeats collapsed."""
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("glint").setLevel(level)
    if level != "DEBUG":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
