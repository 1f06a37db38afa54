"""Keep the command-line interfaces of two libraries out of our servers' memory.

httpx's package imports its `httpx` command (click, rich, pygments: about 150 modules and
6 MiB in every component, each of which only ever uses httpx as a client), and the cel
binding's imports its REPL (typer, prompt_toolkit, rich: about 300 modules and 15 MiB in the
API server, which only compiles and evaluates expressions). Neither is used by K8s-Lite:
marking them absent before the package is imported makes httpx fall back to its stub `main`
(it catches the ImportError for installs without the cli extra) and gives cel an empty
`cli` module. Their own console scripts are separate processes and unaffected.
"""

from __future__ import annotations

import sys
import types


def skip_library_clis() -> None:
    # setdefault: a process that imported either already (a test, a REPL) keeps it whole.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    if "cel" not in sys.modules:
        sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli", "not loaded by k8slite"))
