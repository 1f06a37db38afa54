"""k8slite up: run a whole cluster on embedded defaults as supervised child processes."""

from __future__ import annotations

import argparse
import logging
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from k8slite import pki
from k8slite.cmd.common import run_until_signal, setup_logging

log = logging.getLogger("k8slite.up")

# Restart backoff for a crashed component: doubles from 1 s up to 30 s.
_BACKOFF_START, _BACKOFF_MAX = 1.0, 30.0
# A component that stayed up this long counts as healthy again (backoff resets).
_HEALTHY_AFTER = 60.0


@dataclass
class Component:
    """A child process to keep running: its name, command line and log file."""

    name: str
    argv: list[str]
    log_path: Path
    restarts: int = field(default=0)


async def supervise(component: Component) -> None:
    """Run the component forever, restarting it with backoff whenever it exits."""
    delay = _BACKOFF_START
    while True:
        started = trio.current_time()
        with component.log_path.open("ab") as out:
            proc = await trio.lowlevel.open_process(component.argv, stdout=out, stderr=out)
            try:
                code = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    with trio.move_on_after(5) as cleanup:
                        cleanup.shield = True
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
        component.restarts += 1
        if trio.current_time() - started > _HEALTHY_AFTER:
            delay = _BACKOFF_START
        log.error("%s exited with code %s; restarting in %.0fs (see %s)",
                  component.name, code, delay, component.log_path)
        await trio.sleep(delay)
        delay = min(delay * 2, _BACKOFF_MAX)


async def wait_ready(url: str, ca: Path, timeout: float = 60.0) -> None:
    """Poll /readyz until the API server answers."""
    ctx = ssl.create_default_context(cafile=str(ca))
    # The API server requires a client certificate (mutual TLS): present the admin's.
    ctx.load_cert_chain(ca.parent / "client-admin.pem", ca.parent / "client-admin.key")
    with trio.fail_after(timeout):
        async with httpx.AsyncClient(verify=ctx) as client:
            while True:
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.2)


def _script(name: str) -> str:
    """The console script next to this interpreter (the venv's bin), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


async def up(data_dir: Path, port: int) -> None:
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    url = f"https://127.0.0.1:{port}"
    pki.ensure_pki(data_dir / "pki", server_url=url)
    kubeconfig = data_dir / "kubeconfig"
    shutil.copyfile(data_dir / "pki" / "admin.kubeconfig", kubeconfig)
    kubeconfig.chmod(0o600)
    components = [
        Component("apiserver", [_script("k8slite-apiserver"), "--data-dir", str(data_dir),
                                "--secure-port", str(port)],
                  data_dir / "logs" / "apiserver.log"),
    ]
    async with trio.open_nursery() as nursery:
        for c in components:
            nursery.start_soon(supervise, c)
        await wait_ready(url, data_dir / "pki" / "ca.pem")
        print(f"K8s-Lite API server is up at {url} (data in {data_dir})", flush=True)
        print(f"  export KUBECONFIG={kubeconfig}", flush=True)
        print("  kubectl get namespaces", flush=True)
        pki_dir = data_dir / "pki"
        print(f"  curl --cert {pki_dir}/client-admin.pem --key {pki_dir}/client-admin.key "
              f"--cacert {pki_dir}/ca.pem {url}/api/v1/namespaces", flush=True)
        print("Press Ctrl-C to stop.", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="k8slite up", description=__doc__)
    p.add_argument("--data-dir", type=Path, default=Path(".k8slite"))
    p.add_argument("--port", type=int, default=8080)
    a = p.parse_args(argv)
    setup_logging()
    try:
        return run_until_signal(up, a.data_dir, a.port)
    except subprocess.CalledProcessError as e:
        log.error("%s", e)
        return 1
