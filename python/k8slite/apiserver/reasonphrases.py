"""Send the standard reason phrase on HTTP/1.1 status lines ("404 Not Found").

hypercorn writes responses through h11 without a reason phrase; upstream's server sends one
and clients surface it (the official Python client's ApiException.reason is "Not Found",
"Conflict", "Unprocessable Entity"). install() fills it in for every response.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11

_original_init = h11.Response.__init__


def _init_with_reason(
    self: h11.Response,
    *,
    headers: Any,
    status_code: int,
    http_version: bytes | str = b"1.1",
    reason: bytes | str = b"",
    _parsed: bool = False,
) -> None:
    if not reason and not _parsed:
        try:
            reason = HTTPStatus(status_code).phrase
        except ValueError:
            pass  # a non-standard code: an empty phrase is valid HTTP
    _original_init(
        self,
        headers=headers,
        status_code=status_code,
        http_version=http_version,
        reason=reason,
        _parsed=_parsed,
    )


def install() -> None:
    """Idempotent: wraps h11's Response constructor once per process."""
    if h11.Response.__init__ is not _init_with_reason:
        h11.Response.__init__ = _init_with_reason  # type: ignore[method-assign,assignment]
