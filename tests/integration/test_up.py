"""`k8slite up`: a whole cluster from one command, supervised, stopped cleanly, restarted.

These runs leave out the proxy (--no-proxy) so that they need neither root nor the host's
service route; tests/e2e runs `k8slite up` with it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import trio
import yaml

from k8slite import pki
from k8slite.cmd.up import DEFAULT_PORTS, prometheus_config, wait_healthy
from k8slite.freeport import free_port
from tests.conftest import BIN
from tests.e2e.cluster import Cluster, start_up, stop_up, up_command
from tests.etcd_server import start_etcd
from tests.integration.csr_helpers import csr_object, csr_pem
from tests.launch import REPO
from tests.polling import wait_for


def children(pid: int) -> dict[int, str]:
    """The live child processes of pid: their command lines."""
    out: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                out[int(stat.parent.name)] = cmdline.decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return out


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def k8slite(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "k8slite"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


def component_pid(cluster: Cluster, script: str) -> int | None:
    assert cluster.proc is not None
    for pid, cmd in children(cluster.proc.pid).items():
        if f"/{script} " in cmd:
            return pid
    return None


def up(tmp: Path, *extra: str, node: str = "") -> Cluster:
    argv = up_command(tmp, "--no-proxy", *extra, node=node or None)
    return start_up(argv, tmp)


def test_up_runs_stops_and_reuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = up(data, "--runtime", "process")
    try:
        out = "".join(cluster.output)
        assert f"export KUBECONFIG={data / 'kubeconfig'}" in out, out
        assert "  kubectl get nodes" in out, out
        # No proxy (--no-proxy), so pods cannot reach kube-dns: up says so.
        assert "pods do not use it: it needs the proxy" in out, out
        # The dashboard runs beside it (a free port with --port 0), its address printed and
        # recorded; the session secret in it is what lets a browser in.
        dashboard = cluster.info["dashboard"]
        assert dashboard.startswith("http://127.0.0.1:") and "/?session=" in dashboard
        assert f"Dashboard: {dashboard}" in out, out
        with httpx.Client(timeout=30) as web:
            assert web.get(dashboard.split("/?")[0] + "/cluster").status_code == 403
            assert web.get(dashboard).status_code == 303
        node, port = cluster.info["node"], cluster.info["ports"]["apiserver"]
        # Every kubeconfig points at the port chosen, the admin's is in DIR/kubeconfig.
        for name in (
            "kubeconfig",
            "pki/admin.kubeconfig",
            "pki/scheduler.kubeconfig",
            f"pki/node-{node}.kubeconfig",
        ):
            doc = yaml.safe_load((data / name).read_text())
            assert doc["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        assert oct((data / "kubeconfig").stat().st_mode & 0o777) == "0o600"
        nodes = cluster.kubectl("get", "nodes").stdout
        assert any(line.split()[:2] == [node, "Ready"] for line in nodes.splitlines()), nodes
        cluster.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
        # Bootstrap tokens are on, as kubeadm's: a token made with `k8slite token` signs
        # cluster-info (the signer runs) and authenticates.
        join = subprocess.run(
            [str(BIN / "python"), "-m", "k8slite.cmd.k8slite", "token", "--data-dir", str(data)]
            + ["create", "--print-join-command"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert join.returncode == 0, join.stderr
        assert join.stdout.split()[2:4] == ["--server", f"https://127.0.0.1:{port}"], join.stdout
        token_id = join.stdout.split()[5][:6]
        wait_for(
            lambda: (
                f"jws-kubeconfig-{token_id}"
                in cluster.kubectl(
                    "get", "cm", "-n", "kube-public", "cluster-info", "-o", "json"
                ).stdout
            ),
            what="cluster-info signed with the new token",
        )
        # One child per component, each its own console script with its own identity.
        assert cluster.proc is not None
        cmds = list(children(cluster.proc.pid).values())
        for script, identity in (
            ("k8slite-apiserver", None),
            ("k8slite-controller-manager", "controller-manager"),
            ("k8slite-scheduler", "scheduler"),
            ("k8slite-kubelet", f"node-{node}"),
            ("k8slite-dns", "dns"),
            ("k8slite-metrics-server", "metrics-server"),
        ):
            [cmd] = [c for c in cmds if f"/{script} " in c]
            if identity:
                assert f"pki/{identity}.kubeconfig" in cmd, cmd
        assert not any("k8slite-proxy" in c for c in cmds)
        # "Up" means every component serves, so each has written its start line by now.
        for log, line in (
            ("apiserver", "k8slite-apiserver listening on"),
            ("controller-manager", "k8slite-controller-manager serving on"),
            ("scheduler", "k8slite-scheduler listening on"),
            ("kubelet", "API listening on"),
            ("dns", "k8slite-dns ready: DNS on 127.0.0.1:"),
            ("metrics-server", "k8slite-metrics-server ready: serving on https://127.0.0.1:"),
        ):
            text = (data / "logs" / f"{log}.log").read_text()
            assert line in text, (log, text, (data / "up.stderr").read_text())
        pids = list(children(cluster.proc.pid))
        ca = (data / "pki" / "ca.pem").read_bytes()
        server_cert = (data / "pki" / "server.pem").read_bytes()
    finally:
        started = time.monotonic()
        code = stop_up(cluster)
    assert code == 0, (data / "up.stderr").read_text()
    # Quick (SIGTERM, then SIGKILL after 5 s at most), and nothing stays behind.
    assert time.monotonic() - started < 20
    assert not [
        p
        for p in pids
        if Path(f"/proc/{p}").exists()
        and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]
    ]
    assert "stopped" in (data / "up.stderr").read_text()

    # Again on the same directory: same certificates, same data.
    cluster = up(data, "--runtime", "process", node=node)
    try:
        assert (data / "pki" / "ca.pem").read_bytes() == ca
        assert (data / "pki" / "server.pem").read_bytes() == server_cert
        assert f"certificates in {data / 'pki'}: reused" in (data / "up.stderr").read_text()
        value = cluster.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}").stdout
        assert value == "v"
    finally:
        assert stop_up(cluster) == 0


def test_crashed_component_is_restarted_and_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = up(data, "--runtime", "fake")
    try:
        first = component_pid(cluster, "k8slite-scheduler")
        assert first is not None
        log = data / "logs" / "scheduler.log"
        assert log.read_text().count("k8slite-scheduler listening on") == 1, log.read_text()
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            lambda: (p := component_pid(cluster, "k8slite-scheduler")) != first and p,
            30,
            what="a new scheduler",
        )
        assert second != first
        err = (data / "up.stderr").read_text()
        assert "scheduler was killed by SIGKILL; restarting it in 1s" in err, err
        # The new one serves again (taking the lease over waits for the old one's to
        # expire, as upstream: not waited for here).
        try:
            wait_for(
                lambda: log.read_text().count("k8slite-scheduler listening on") == 2,
                30,
                what="the new scheduler to serve",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{log}:\n{log.read_text()}") from None
    finally:
        assert stop_up(cluster) == 0


def test_hollow_nodes(tmp_path: Path) -> None:
    cluster = up(tmp_path / "data", "--runtime", "fake", "--nodes", "3")
    try:

        def all_ready() -> list[str] | None:
            out = cluster.kubectl("get", "nodes", "--no-headers").stdout
            ready = [line.split()[0] for line in out.splitlines() if line.split()[1] == "Ready"]
            return ready if len(ready) == 4 else None

        names = wait_for(all_ready, 60, what="4 Ready nodes")
        assert set(names) == {cluster.info["node"], "hollow-0", "hollow-1", "hollow-2"}, names
    finally:
        assert stop_up(cluster) == 0


def test_up_signs_approved_certificate_requests(tmp_path: Path) -> None:
    """`k8slite up` hands the cluster CA to csrsigning: an approved request is issued."""
    cluster = up(tmp_path / "data", "--runtime", "fake")
    try:
        obj = csr_object("up-alice", csr_pem("alice"))
        cluster.kubectl("create", "-f", "-", input=json.dumps(obj))
        cluster.kubectl("certificate", "approve", "up-alice")

        def issued() -> str | None:
            out = cluster.kubectl("get", "csr", "up-alice", "--no-headers").stdout.split()
            return out[-1] if out and out[-1] == "Approved,Issued" else None

        wait_for(issued, 90, what="csr up-alice issued")
    finally:
        assert stop_up(cluster) == 0


def test_busy_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run(
            [
                str(BIN / "k8slite"),
                "up",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(port),
                "--no-proxy",
                "--runtime",
                "fake",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {port} (apiserver) already in use" in done.stderr, done.stderr


def test_one_up_per_data_dir(tmp_path: Path) -> None:
    cluster = up(tmp_path / "data", "--runtime", "fake")
    try:
        done = subprocess.run(
            [
                str(BIN / "k8slite"),
                "up",
                "--data-dir",
                str(tmp_path / "data"),
                "--port",
                "0",
                "--no-proxy",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 1
        assert "another `k8slite up` is running on" in done.stderr, done.stderr
    finally:
        assert stop_up(cluster) == 0


def test_prometheus_config_names_every_component(tmp_path: Path) -> None:
    ports = {**DEFAULT_PORTS, "dns-metrics": 9153}
    doc = yaml.safe_load(prometheus_config(tmp_path, ports, dns_address="10.244.0.1"))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "dns"}
    assert jobs["dns"]["static_configs"][0]["targets"] == ["10.244.0.1:9153"]
    assert jobs["apiserver"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert jobs["proxy"]["scheme"] == "http"
    assert jobs["kubelet"]["tls_config"]["cert_file"].endswith("client-monitoring.pem")
    assert json.dumps(doc)  # plain data, nothing YAML-specific


def test_help_lists_up() -> None:
    done = subprocess.run(
        [str(BIN / "k8slite"), "--help"], capture_output=True, text=True, check=True
    )
    assert "up:" in done.stdout
    done = subprocess.run(
        [str(BIN / "k8slite"), "up", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--data-dir", "--runtime", "--nodes", "--port", "--proxy-mode"):
        assert flag in done.stdout


async def test_wait_healthy_names_what_never_answered() -> None:
    silent = free_port()  # nothing listens there
    with pytest.raises(trio.TooSlowError, match="^scheduler$"):
        await wait_healthy({"scheduler": f"https://127.0.0.1:{silent}/healthz"}, timeout=1)


def test_detached_cluster_status_logs_and_stop(tmp_path: Path) -> None:
    """--detach without a Docker engine: the process runtime's WARNING heads the output,
    then progress; status, logs and stop find the background supervisor."""
    data = tmp_path / "data"
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    argv = up_command(data, "--no-proxy", "--detach")
    node = argv[argv.index("--node-name") + 1]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=300, cwd=REPO, check=False
    )
    follower: subprocess.Popen[bytes] | None = None
    try:
        err = done.stderr
        assert done.returncode == 0, err
        assert "WARNING: Pods will run as plain processes" in err, err
        assert err.index("WARNING: Pods will run") < err.index("certificates in"), err
        assert "Why: no Docker engine" in err, err
        assert "hack/build-images" in err and "`make up`" in err, err
        for line in (
            "started apiserver (pid",
            "API server ready at",
            "started kubelet (pid",
            "started scheduler (pid",
            "controller-manager is healthy",
            "kubelet is healthy",
            f"node {node} is Ready",
        ):
            assert line in err, (line, err)
        assert f"export KUBECONFIG={data / 'kubeconfig'}" in done.stdout, done.stdout
        assert f"Stop it with `k8slite stop --data-dir {data}`" in done.stdout, done.stdout
        state = data / "cluster.json"
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        info = json.loads(state.read_text())
        assert (info["state"], info["runtime"], info["detached"]) == ("ready", "process", True)
        # The supervisor outlived the command that started it, with its components.
        supervisor = info["pid"]
        assert running(supervisor)
        comps = {name: rec["pid"] for name, rec in info["components"].items()}
        assert set(comps) == {
            "apiserver",
            "controller-manager",
            "scheduler",
            "kubelet",
            "dns",
            "metrics-server",
        }
        assert set(children(supervisor)) == set(comps.values())
        assert "the cluster is up" in (data / "logs" / "up.log").read_text()

        status = k8slite("status", "--data-dir", str(data))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"node       {node}: Ready" in status.stdout, status.stdout
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line}
        for name, pid in comps.items():
            assert rows[name][1:2] == [str(pid)] and rows[name][3] == "ok", status.stdout
        assert rows["apiserver"][2] == str(info["ports"]["apiserver"])

        logs = k8slite("logs", "--data-dir", str(data), "scheduler")
        assert "k8slite-scheduler listening on" in logs.stdout, logs.stdout + logs.stderr
        last = k8slite("logs", "--data-dir", str(data), "--tail", "1", "scheduler")
        # One whole line of it (the scheduler may log more meanwhile).
        assert last.stdout.count("\n") == 1, last.stdout
        assert last.stdout in (data / "logs" / "scheduler.log").read_text()
        missing = k8slite("logs", "--data-dir", str(data), "etcd")
        assert missing.returncode == 1 and "there are: apiserver" in missing.stderr

        follower = subprocess.Popen(
            [str(BIN / "k8slite"), "logs", "--data-dir", str(data), "-f", "up"],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        followed: list[str] = []

        def read() -> None:
            assert follower is not None and follower.stdout is not None
            for raw in follower.stdout:
                followed.append(raw.decode(errors="replace"))

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: "the cluster is up" in "".join(followed), 30, what="the log so far")

        stopped = k8slite("stop", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"supervisor pid {supervisor}" in stopped.stdout
        # The follower saw what the supervisor wrote while stopping.
        wait_for(
            lambda: "SIGTERM received, stopping the cluster" in "".join(followed),
            30,
            what="the followed log to show the stop",
        )
        assert not [p for p in [supervisor, *comps.values()] if running(p)]
        after = k8slite("status", "--data-dir", str(data))
        assert after.returncode == 1 and "no cluster is running" in after.stdout
        assert json.loads(state.read_text())["state"] == "stopped"
    finally:
        if follower is not None:
            follower.terminate()
            follower.wait(10)
        k8slite("stop", "--data-dir", str(data))


def test_killed_supervisor_takes_its_components_along(tmp_path: Path) -> None:
    """kill -9 of `k8slite up`: its components get their death signal; one that could not
    act on it (stopped) is found and stopped by the next `k8slite up` on the directory."""
    data = tmp_path / "data"
    cluster = up(data, "--runtime", "fake")
    leftover: int | None = None
    try:
        assert cluster.proc is not None
        node = cluster.info["node"]
        pids = list(children(cluster.proc.pid))
        assert len(pids) == 6, pids
        cluster.proc.kill()
        cluster.proc.wait()
        wait_for(
            lambda: not [p for p in pids if running(p)],
            60,
            what="the components to stop with their supervisor",
        )

        # Again on the same directory: it starts. This time the API server is stopped
        # (SIGSTOP) when its supervisor dies, so that it outlives it, holding the database.
        cluster = up(data, "--runtime", "fake", node=node)
        assert cluster.proc is not None
        leftover = component_pid(cluster, "k8slite-apiserver")
        assert leftover is not None
        os.kill(leftover, signal.SIGSTOP)
        cluster.proc.kill()
        cluster.proc.wait()
        assert running(leftover)
        status = k8slite("status", "--data-dir", str(data))
        assert status.returncode == 1
        assert f"apiserver (pid {leftover})" in status.stdout, status.stdout

        cluster = up(data, "--runtime", "fake", node=node)
        err = (data / "up.stderr").read_text()
        assert "is gone but left" in err and f"apiserver (pid {leftover})" in err, err
        assert "stopped what the previous `k8slite up` left behind" in err, err
        assert not running(leftover)
        assert cluster.kubectl("get", "node", node, "--no-headers").stdout.split()[1] == "Ready"

        # `k8slite stop` stops a cluster running in the foreground too, as Ctrl-C would.
        stopped = k8slite("stop", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert cluster.proc is not None
        assert cluster.proc.wait(30) == 0
    finally:
        stop_up(cluster)
        if leftover is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)


def test_component_that_does_not_come_up_is_named(tmp_path: Path) -> None:
    """A kubelet whose runtime does not answer: `k8slite up` gives up after --wait, naming
    it, its /healthz, its log and the end of that log."""
    data = tmp_path / "data"
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    # Long enough for the kubelet to start and log why, even on a busy machine.
    argv = up_command(data, "--no-proxy", "--runtime", "docker", "--wait", "30")
    node = argv[argv.index("--node-name") + 1]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=180, cwd=REPO, check=False
    )
    assert done.returncode == 1, done.stderr
    kubelet_log = data / "logs" / "kubelet.log"
    assert "k8slite up: error: kubelet did not answer http://127.0.0.1:" in done.stderr
    assert f"within 30s; its log {kubelet_log} ends with:" in done.stderr, done.stderr
    assert "the container runtime does not answer" in done.stderr, done.stderr
    assert f"node {node} did not become Ready within 30s" in done.stderr, done.stderr
    # Meanwhile it said what it was waiting for.
    reminders = [line for line in done.stderr.splitlines() if "still waiting, after" in line]
    assert reminders, done.stderr
    assert "kubelet" in reminders[0] and f"node {node} to be Ready" in reminders[0], reminders
    info = json.loads((data / "cluster.json").read_text())
    assert info["state"] == "stopped" and info["components"] == {}


def test_kubeconfig_merge_keeps_the_users_entries(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    pki.ensure_pki(one / "pki", nodes=["n1"], server_url="https://127.0.0.1:6443")
    for data in (one, two):
        data.mkdir(exist_ok=True)
        shutil.copyfile(pki.kubeconfig_path(one / "pki", "admin"), data / "kubeconfig")
    home = tmp_path / "home"
    config = home / ".kube" / "config"
    config.parent.mkdir(parents=True)
    theirs = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": "https://prod.invalid:6443"}}],
        "users": [{"name": "me", "user": {"token": "secret"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
        "current-context": "prod",
        "preferences": {"colors": True},
    }
    config.write_text(yaml.safe_dump(theirs))
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(home)

    printed = k8slite("kubeconfig", "--data-dir", str(one), env=env)
    name_one = yaml.safe_load(printed.stdout)["current-context"]
    assert name_one.startswith("k8slite-one-"), printed.stdout
    for _ in range(2):  # a second merge replaces the first
        merged = k8slite("kubeconfig", "--data-dir", str(one), "--merge", env=env)
        assert merged.returncode == 0, merged.stderr
    assert f"merged context {name_one} into {config}" in merged.stdout
    doc = yaml.safe_load(config.read_text())
    assert doc["current-context"] == name_one
    assert [c["name"] for c in doc["contexts"]] == ["prod", name_one]
    assert doc["users"][0] == theirs["users"][0] and doc["preferences"] == {"colors": True}
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    merged = k8slite("kubeconfig", "--data-dir", str(two), "--merge", env=env)
    assert merged.returncode == 0, merged.stderr
    doc = yaml.safe_load(config.read_text())
    name_two = doc["current-context"]
    assert name_two.startswith("k8slite-two-") and name_two != name_one
    contexts = subprocess.run(
        [str(BIN / "kubectl"), "config", "get-contexts", "-o", "name"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(contexts) == sorted(["prod", name_one, name_two])

    # With $KUBECONFIG, its first file is the one written.
    first, second = tmp_path / "first", tmp_path / "second"
    second.write_text(yaml.safe_dump(theirs))
    env["KUBECONFIG"] = f"{first}{os.pathsep}{second}"
    merged = k8slite("kubeconfig", "--data-dir", str(one), "--merge", env=env)
    assert merged.returncode == 0, merged.stderr
    assert yaml.safe_load(first.read_text())["current-context"] == name_one
    assert yaml.safe_load(second.read_text()) == theirs


def test_up_on_an_existing_etcd(tmp_path: Path) -> None:
    """`k8slite up --etcd-servers` stores in that etcd (TLS, client certificates): a second
    cluster directory on the same etcd finds what the first stored."""
    etcd = start_etcd(tmp_path / "etcd", tls=True)
    assert etcd.tls is not None
    flags = [
        "--etcd-servers",
        etcd.url,
        "--etcd-cafile",
        str(etcd.tls.cafile),
        "--etcd-certfile",
        str(etcd.tls.certfile),
        "--etcd-keyfile",
        str(etcd.tls.keyfile),
    ]
    try:
        first = up(tmp_path / "first", "--runtime", "fake", *flags)
        try:
            cmds = list(children(first.proc.pid).values()) if first.proc else []
            [cmd] = [c for c in cmds if "/k8slite-apiserver " in c]
            assert "--storage-backend=etcd3" in cmd and f"--etcd-servers={etcd.url}" in cmd
            first.kubectl("create", "configmap", "in-etcd", "--from-literal=k=v")
        finally:
            assert stop_up(first) == 0
        assert not (tmp_path / "first" / "db").exists()  # nothing went to RocksDB

        with etcd.client() as c:
            # At upstream's key: /registry/configmaps/..., no group segment.
            key = base64.b64encode(b"/registry/configmaps/default/in-etcd").decode()
            assert c.post("/v3/kv/range", json={"key": key}).json().get("count") == "1"

        second = up(tmp_path / "second", "--runtime", "fake", *flags)
        try:
            value = second.kubectl("get", "configmap", "in-etcd", "-o", "jsonpath={.data.k}").stdout
            assert value == "v"
        finally:
            assert stop_up(second) == 0
    finally:
        etcd.stop()
