"""The shared component flags: Go durations, leader election, --version, -v, --logging-format."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8slite import GIT_VERSION
from k8slite.component.flags import (
    Duration,
    add_component_flags,
    add_leader_election_flags,
    leader_election_config,
    leader_election_from_args,
    validate,
)
from k8slite.component.logging import V2, setup_logging
from k8slite.leaderelection import LeaderElectionConfig, LeaderElector
from tests.conftest import start_apiserver

REPO = Path(__file__).resolve().parents[2]
S, MS, US = 10**9, 10**6, 10**3

# Go's own time.ParseDuration table (time_test.go), as input -> nanoseconds.
ACCEPTED = [
    ("0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600 * MS),
    ("5.s", 5 * S),
    (".5s", 500 * MS),
    ("1.0s", 1 * S),
    ("1.00s", 1 * S),
    ("1.004s", 1 * S + 4 * MS),
    ("1.0040s", 1 * S + 4 * MS),
    ("100.00100s", 100 * S + 1 * MS),
    ("10ns", 10),
    ("11us", 11 * US),
    ("12µs", 12 * US),  # U+00B5
    ("12μs", 12 * US),  # U+03BC
    ("13ms", 13 * MS),
    ("14s", 14 * S),
    ("15m", 15 * 60 * S),
    ("16h", 16 * 3600 * S),
    ("3h30m", 3 * 3600 * S + 30 * 60 * S),
    ("10.5s4m", 4 * 60 * S + 10 * S + 500 * MS),
    ("-2m3.4s", -(2 * 60 * S + 3 * S + 400 * MS)),
    ("1h2m3s4ms5us6ns", 3600 * S + 2 * 60 * S + 3 * S + 4 * MS + 5 * US + 6),
    ("39h9m14.425s", 39 * 3600 * S + 9 * 60 * S + 14 * S + 425 * MS),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * 60 * S),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)),
    ("0.100000000000000000000h", 6 * 60 * S),
    ("0.830103483285477580700h", 49 * 60 * S + 48 * S + 372539827),
    ("0000000000000000000000001s", 1 * S),
    # What our flags use.
    ("1h2m3.5s", 3723 * S + 500 * MS),
    ("300ms", 300 * MS),
    ("1.5h", 5400 * S),
    ("-1s", -1 * S),
]

# Go's rejected inputs, with Go's error text.
REJECTED = [
    ("", 'time: invalid duration ""'),
    ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'),
    ("s", 'time: invalid duration "s"'),
    (".", 'time: invalid duration "."'),
    ("-.", 'time: invalid duration "-."'),
    (".s", 'time: invalid duration ".s"'),
    ("+.s", 'time: invalid duration "+.s"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("1s2", 'time: missing unit in duration "1s2"'),
    ("1s-1s", 'time: unknown unit "s-" in duration "1s-1s"'),
    ("x", 'time: invalid duration "x"'),
    ("1ÿs", 'time: unknown unit "\\xc3\\xbfs" in duration "1\\xc3\\xbfs"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
    ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
    pytest.param("9" * 5000 + "s", f'time: invalid duration "{"9" * 5000}s"', id="5000 nines"),
]

# Go's Duration.String table.
PRINTED = [
    ("0s", 0),
    ("1ns", 1),
    ("1.1µs", 1100),
    ("2.2ms", 2200 * US),
    ("3.3s", 3300 * MS),
    ("4m5s", 4 * 60 * S + 5 * S),
    ("4m5.001s", 4 * 60 * S + 5001 * MS),
    ("5h6m7.001s", 5 * 3600 * S + 6 * 60 * S + 7001 * MS),
    ("8m0.000000001s", 8 * 60 * S + 1),
    ("2562047h47m16.854775807s", (1 << 63) - 1),
    ("-2562047h47m16.854775808s", -(1 << 63)),
]


@pytest.mark.parametrize(("text", "nanoseconds"), ACCEPTED)
def test_duration_accepts_what_go_accepts(text: str, nanoseconds: int) -> None:
    assert Duration.parse(text).nanoseconds == nanoseconds


@pytest.mark.parametrize(("text", "error"), REJECTED)
def test_duration_rejects_what_go_rejects(text: str, error: str) -> None:
    with pytest.raises(ValueError) as e:
        Duration.parse(text)
    assert str(e.value) == error


@pytest.mark.parametrize(("text", "nanoseconds"), PRINTED)
def test_duration_prints_as_go(text: str, nanoseconds: int) -> None:
    assert str(Duration(nanoseconds)) == text


def test_duration_flag_error_is_gos() -> None:
    parser = argparse.ArgumentParser(prog="k8slite-scheduler")
    add_leader_election_flags(parser, default_name="kube-scheduler")
    with pytest.raises(SystemExit):
        parser.parse_args(["--leader-elect-retry-period=2"])
    args = parser.parse_args(["--leader-elect-retry-period=1.5s"])
    assert args.leader_elect_retry_period == 1.5


def _leader_election(*argv: str) -> LeaderElectionConfig:
    parser = argparse.ArgumentParser()
    add_leader_election_flags(parser, default_name="kube-scheduler")
    return leader_election_from_args(parser.parse_args(list(argv)))


def test_leader_election_flags() -> None:
    assert _leader_election() == LeaderElectionConfig(resource_name="kube-scheduler")
    cfg = _leader_election(
        "--leader-elect=false",
        "--leader-elect-lease-duration=30s",
        "--leader-elect-renew-deadline",
        "20s",
        "--leader-elect-retry-period=500ms",
        "--leader-elect-resource-namespace=other",
        "--leader-elect-resource-name=x",
    )
    assert cfg == LeaderElectionConfig(False, 30.0, 20.0, 0.5, "leases", "other", "x")
    assert _leader_election("--leader-elect").leader_elect is True


def test_validate_in_upstreams_words() -> None:
    assert validate(_leader_election()) == []
    # Not electing: nothing to check, as upstream.
    assert (
        validate(_leader_election("--leader-elect=false", "--leader-elect-retry-period=1h")) == []
    )
    assert validate(_leader_election("--leader-elect-renew-deadline=20s")) == [
        'leaderElection.leaseDuration: Invalid value: "20s": '
        "leaseDuration must be greater than renewDeadline"
    ]
    # 2.4s is 1.2 (client-go's JitterFactor) times the 2s retry period.
    assert validate(_leader_election("--leader-elect-renew-deadline=2.4s")) == [
        'leaderElection.renewDeadline: Invalid value: "2.4s": '
        "renewDeadline must be greater than retryPeriod*JitterFactor"
    ]
    assert validate(_leader_election("--leader-elect-renew-deadline=2.5s")) == []
    assert validate(_leader_election("--leader-elect-retry-period=0s")) == [
        'leaderElection.retryPeriod: Invalid value: "0s": must be greater than zero'
    ]
    assert validate(_leader_election("--leader-elect-resource-name=")) == [
        'leaderElection.resourceName: Invalid value: "": resourceName is required'
    ]


def test_every_leader_elected_component_validates(capsys: pytest.CaptureFixture[str]) -> None:
    from k8slite.cmd import controller_manager, scheduler

    for parse in (controller_manager.parse_args, scheduler.parse_args):
        with pytest.raises(SystemExit):
            parse(["--leader-elect-renew-deadline=20s"])
        assert "leaseDuration must be greater than renewDeadline" in capsys.readouterr().err
        parse(["--leader-elect=false", "--leader-elect-renew-deadline=20s"])
    parser = argparse.ArgumentParser()
    add_leader_election_flags(parser)
    with pytest.raises(SystemExit):
        leader_election_config(parser, parser.parse_args([]))
    assert "resourceName is required" in capsys.readouterr().err


def test_leader_elector_refuses_the_same() -> None:
    with pytest.raises(ValueError, match="renewDeadline must be greater than retryPeriod"):
        LeaderElector(None, "ns", "l", "me", renew_deadline=2, retry_period=2)  # type: ignore[arg-type]


# Each console script's --version, and `k8slite version`: all say the same.
VERSION_COMMANDS = [
    *(
        [f"k8slite.cmd.{m}", "--version"]
        for m in (
            "k8slite",
            "apiserver",
            "controller_manager",
            "scheduler",
            "kubelet",
            "proxy",
            "dns",
        )
    ),
    ["k8slite.cmd.k8slite", "version"],
]


@pytest.mark.parametrize("argv", VERSION_COMMANDS, ids=" ".join)
def test_version(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    assert done.stdout == f"Kubernetes {GIT_VERSION}\n"


def test_verbosity_and_format_flags() -> None:
    parser = argparse.ArgumentParser()
    add_component_flags(parser)
    a = parser.parse_args([])
    assert (a.verbosity, a.logging_format) == (0, "text")
    a = parser.parse_args(["--v=4", "--logging-format", "json"])
    assert (a.verbosity, a.logging_format) == (4, "json")
    assert parser.parse_args(["-v", "2"]).verbosity == 2
    for bad in (["--logging-format=yaml"], ["-v", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [
        (0, ["warning", "info"]),
        (2, ["warning", "info", "v2"]),
        (4, ["warning", "info", "v2", "debug"]),
        (5, ["warning", "info", "v2", "debug", "trace"]),
    ],
)
def test_verbosity_levels_as_klogs(
    verbosity: int,
    shown: list[str],
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    setup_logging(verbosity, "json")
    log = logging.getLogger("k8slite.test")
    log.warning("warning")
    log.info("info")
    log.log(V2, "v2")
    log.debug("debug")
    log.log(5, "trace")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == shown


def test_json_lines_carry_fields_and_errors(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    setup_logging(0, "json")
    log = logging.getLogger("k8slite.test")
    log.info("pod %s synced", "web-1", extra={"pod": "ns/web-1", "attempt": 2})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("sync failed")
    info, error = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert isinstance(info.pop("ts"), float)
    assert info == {
        "level": "info",
        "logger": "k8slite.test",
        "msg": "pod web-1 synced",
        "pod": "ns/web-1",
        "attempt": 2,
    }
    assert (error["level"], error["msg"], error["err"]) == ("error", "sync failed", "boom")
    assert "RuntimeError: boom" in error["stacktrace"]


def test_a_component_logs_json_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pki.py's DSA deprecation warning comes at import, before logging is set up.
    monkeypatch.setenv("PYTHONWARNINGS", "ignore:DSA is deprecated")
    server = start_apiserver(tmp_path / "data", "--logging-format=json", "--v=4")
    server.stop()
    lines = (tmp_path / "data" / "apiserver.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(isinstance(r["ts"], float) for r in records)
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any("serving on https://" in r["msg"] for r in records)
