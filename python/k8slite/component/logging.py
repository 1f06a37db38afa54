"""Logging as klog's flags mean it: -v levels on Python's logging, text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

# klog's verbosity on Python's levels. log.info is klog's V(0) (always shown), warnings and
# errors are klog's warnings and errors; below INFO: V(2) steady-state detail (what
# operators run upstream components at), V(4) debug (logging.DEBUG), V(5) and up trace.
V2 = 15
TRACE = 5
logging.addLevelName(V2, "V2")
logging.addLevelName(TRACE, "TRACE")

# Libraries whose INFO lines are per request: shown at trace level, else only their warnings.
_NOISY = ("hypercorn.error", "httpx", "httpcore")
# What every LogRecord carries; anything else was passed in `extra` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def level_for(verbosity: int) -> int:
    """The Python level that shows what klog shows at -v=verbosity."""
    if verbosity >= 5:
        return TRACE
    if verbosity >= 4:
        return logging.DEBUG
    if verbosity >= 2:
        return V2
    return logging.INFO


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (Unix seconds), level, logger, msg, then the fields
    passed as `extra`, and err (with stacktrace) when an exception is logged."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": record.created,
            "level": logging.getLevelName(record.levelno).lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["err"] = str(record.exc_info[1]) or type(record.exc_info[1]).__name__
            line["stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


def setup_logging(verbosity: int = 0, logging_format: str = "text") -> None:
    """Log to stderr at -v=verbosity, in --logging-format text or json."""
    handler = logging.StreamHandler(sys.stderr)
    if logging_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s: %(message)s"))
    logging.basicConfig(level=level_for(verbosity), handlers=[handler], force=True)
    # Python's warnings become log records, so a JSON log stays JSON line for line.
    logging.captureWarnings(True)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbosity >= 5 else logging.WARNING)
