"""What each component loads: only what it uses (see docs/operations.md, Footprint)."""

from __future__ import annotations

import json
import pickle
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from k8slite import pki
from k8slite.api import schemas
from k8slite.apiserver.authn import AUTHENTICATED, CertAuthenticator, _from_decoded

# Libraries no component uses: the command-line interfaces of httpx and cel (click too, but
# for the API server's Quart, whose Flask imports it), and the official client, whose model
# classes the API server's schemas are derived from.
NEVER = ("rich", "typer", "prompt_toolkit", "kubernetes", "pydantic")


def _loaded(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Packages themselves (cel.cli, an empty stand-in, is there without cel).
    return {name for name in json.loads(out.stdout) if "." not in name}


@pytest.mark.parametrize(
    ("module", "also_not"),
    [
        ("k8slite.cmd.apiserver", ()),
        ("k8slite.cmd.controller_manager", ("click", "quart", "rocksdict", "cel")),
        ("k8slite.cmd.scheduler", ("click", "quart", "rocksdict", "cel", "cryptography")),
        ("k8slite.cmd.kubelet", ("click", "quart", "rocksdict", "cel", "cryptography", "docker")),
        ("k8slite.cmd.proxy", ("click", "quart", "rocksdict", "cel", "cryptography")),
        ("k8slite.cmd.dns", ("click", "quart", "rocksdict", "cel", "cryptography")),
        ("k8slite.cmd.metricsserver", ("click", "quart", "rocksdict", "cel", "cryptography")),
    ],
)
def test_component_loads_only_what_it_uses(module: str, also_not: tuple[str, ...]) -> None:
    loaded = _loaded(module)
    assert not loaded & {*NEVER, *also_not}, sorted(loaded & {*NEVER, *also_not})


def test_schemas_built_in_a_child_are_the_same() -> None:
    """What the API server builds in a child process is what it would build itself."""
    child = subprocess.run(
        [sys.executable, "-m", "k8slite.api.schemas"], capture_output=True, check=True
    )
    built = pickle.loads(child.stdout)
    assert isinstance(built, schemas.Catalog)
    here = schemas._build()
    assert set(built.definitions) == set(here.definitions)
    assert set(built.kinds) == set(here.kinds)
    for name in ("io.k8s.api.core.v1.PodSpec", "io.k8s.api.apps.v1.DeploymentSpec"):
        a, b = built.definitions[name], here.definitions[name]
        assert (a.description, a.required, a.atomic) == (b.description, b.required, b.atomic)
        assert {k: (n.kind, n.meta, n.description) for k, n in a.fields.items()} == {
            k: (n.kind, n.meta, n.description) for k, n in b.fields.items()
        }


def test_decoded_certificate_gives_the_user_cryptography_gives(tmp_path: Path) -> None:
    """The user read from ssl's decoding of a verified certificate (no cryptography) is the
    one read with cryptography from its PEM."""
    pki.ensure_pki(tmp_path)
    cert, _ = pki.issue_client_cert(tmp_path, "alice", "alice", ["dev", "ops"])
    decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    from_ssl = _from_decoded(decoded)
    from_pem = CertAuthenticator._parse(cert.read_text())
    assert from_ssl is not None
    assert from_ssl[0] == from_pem[0]
    assert from_ssl[0].groups == ("dev", "ops", AUTHENTICATED)
    assert abs(from_ssl[1] - from_pem[1]) < 1
    assert _from_decoded(None) is None and _from_decoded({}) is None
