"""k8slite kubeconfig: the admin kubeconfig, named for its data dir; --merge into ~/.kube."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from k8slite.cmd.up import DEFAULT_DATA_DIR

Config = dict[str, Any]


def context_name(data_dir: Path) -> str:
    """k8slite-<base name>-<hash of the absolute path>: one name per data directory, so that
    clusters merged into one kubeconfig do not replace each other."""
    path = str(data_dir.resolve())
    base = re.sub(r"[^a-z0-9]+", "-", Path(path).name.lower()).strip("-") or "root"
    return f"k8slite-{base}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def renamed(config: Config, name: str) -> Config:
    """The single-context admin kubeconfig with its cluster, user and context called name."""
    [cluster], [user], [context] = config["clusters"], config["users"], config["contexts"]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster["cluster"]}],
        "users": [{"name": name, "user": user["user"]}],
        "contexts": [
            {"name": name, "context": {**context["context"], "cluster": name, "user": name}}
        ],
        "current-context": name,
        "preferences": {},
    }


def merge(into: Config, ours: Config) -> Config:
    """into with ours's cluster, user and context added (replacing those of the same names,
    from an earlier merge) and made current; every other entry and key kept as it was."""
    out = dict(into)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for key in ("clusters", "users", "contexts"):
        names = {e["name"] for e in ours[key]}
        out[key] = [e for e in into.get(key) or [] if e.get("name") not in names] + ours[key]
    out["current-context"] = ours["current-context"]
    return out


def default_target() -> Path:
    """The file kubectl writes to: $KUBECONFIG's first entry, else ~/.kube/config."""
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return Path(entry).expanduser()
    return Path.home() / ".kube" / "config"


def write_atomic(path: Path, text: str) -> None:
    """Replace path (through a symlink, if it is one) in one rename, mode 0600."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.k8slite-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="k8slite kubeconfig",
        description="Print the cluster's admin kubeconfig, its cluster, user and context named "
        "k8slite-<data dir>-<hash>; --merge writes them into your kubeconfig instead.",
    )
    p.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    p.add_argument(
        "--merge",
        action="store_true",
        help="merge into $KUBECONFIG's first file, else ~/.kube/config, and make it the "
        "current context; the file's other entries are kept",
    )
    p.add_argument("--path", action="store_true", help="print the kubeconfig file's path only")
    a = p.parse_args(argv)
    data_dir = a.data_dir.resolve()
    source = data_dir / "kubeconfig"
    if a.path:
        print(source)
        return 0
    try:
        ours = renamed(yaml.safe_load(source.read_text()), context_name(data_dir))
    except FileNotFoundError:
        print(f"k8slite kubeconfig: error: no {source}: `k8slite up` writes it", file=sys.stderr)
        return 1
    if not a.merge:
        sys.stdout.write(yaml.safe_dump(ours, sort_keys=False))
        return 0
    target = default_target()
    try:
        existing = yaml.safe_load(target.read_text()) or {}
    except FileNotFoundError:
        existing = {}
    if not isinstance(existing, dict):
        print(f"k8slite kubeconfig: error: {target} is not a kubeconfig", file=sys.stderr)
        return 1
    write_atomic(target, yaml.safe_dump(merge(existing, ours), sort_keys=False))
    name = ours["current-context"]
    print(f"merged context {name} into {target}; it is now the current context")
    return 0
