"""The JSON codec the client uses: the Rust one when built, else the standard library."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], bytes]
loads: Callable[[bytes | bytearray | memoryview | str], Any]

try:
    from k8slite._native import dumps, loads
except ImportError:  # the extension is built without the codec (yet)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes | bytearray | memoryview | str) -> Any:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
