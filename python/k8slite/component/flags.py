"""Flags every component shares: Go durations, leader election, --version, -v, --logging-format."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from k8slite import GIT_VERSION
from k8slite.leaderelection import LeaderElectionConfig, timing_errors

# time.ParseDuration's units, in nanoseconds; µ is U+00B5 (micro sign), μ U+03BC (mu).
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX = 1 << 63  # a Go Duration is an int64 of nanoseconds
LOGGING_FORMATS = ("text", "json")


def _quote(text: str) -> str:
    """Go's time.quote: double quotes, `"` and `\\` escaped, non-ASCII as \\x bytes."""
    out: list[str] = []
    for c in text:
        if c < " " or c > "~":
            out.extend(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogatepass"))
        elif c in '"\\':
            out.append("\\" + c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _digit(c: str) -> bool:
    return "0" <= c <= "9"


def _digits(s: str, pos: int) -> int:
    """Where the run of ASCII digits from pos ends."""
    while pos < len(s) and _digit(s[pos]):
        pos += 1
    return pos


@dataclass(frozen=True, order=True)
class Duration:
    """A Go time.Duration: whole nanoseconds, parsed and printed as Go does."""

    nanoseconds: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        """time.ParseDuration: `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`, or "0"; ValueError as Go's."""
        invalid = ValueError(f"time: invalid duration {_quote(text)}")
        s, neg = text, False
        if s[:1] in ("-", "+"):
            neg, s = s[0] == "-", s[1:]
        if s == "0":
            return cls(0)
        if not s:
            raise invalid
        total, pos = 0, 0
        while pos < len(s):
            if s[pos] != "." and not _digit(s[pos]):
                raise invalid
            start = pos
            pos = whole_end = _digits(s, pos)
            # More than 19 significant digits overflow an int64 (and would cost Python's
            # int() a long conversion).
            significant = s[start:pos].lstrip("0")
            if len(significant) > 19:
                raise invalid
            whole = int(significant or "0")
            fraction, scale, fraction_digits = 0, 1.0, 0
            if pos < len(s) and s[pos] == ".":
                begin = pos + 1
                pos = _digits(s, begin)
                fraction_digits = pos - begin
                # Like Go, stop taking digits once they would overflow an int64.
                for d in s[begin:pos]:
                    if fraction * 10 + int(d) > _MAX:
                        break
                    fraction, scale = fraction * 10 + int(d), scale * 10
            if whole_end == start and not fraction_digits:
                raise invalid  # no digits at all: ".s", "-.s"
            if whole > _MAX:
                raise invalid
            unit_start = pos
            while pos < len(s) and s[pos] != "." and not _digit(s[pos]):
                pos += 1
            if unit_start == pos:
                raise ValueError(f"time: missing unit in duration {_quote(text)}")
            unit = s[unit_start:pos]
            if unit not in _UNIT_NS:
                raise ValueError(f"time: unknown unit {_quote(unit)} in duration {_quote(text)}")
            ns = _UNIT_NS[unit]
            if whole > _MAX // ns:
                raise invalid
            # Go scales the fraction in float64, truncating: exact to the ns up to hours.
            value = whole * ns + (int(fraction * (ns / scale)) if fraction else 0)
            total += value
            if value > _MAX or total > _MAX:
                raise invalid
        if not neg and total > _MAX - 1:
            raise invalid
        return cls(-total if neg else total)

    @property
    def seconds(self) -> float:
        return self.nanoseconds / 1e9

    def __str__(self) -> str:
        """Go's Duration.String: "1h2m3.5s", "300ms", "1.5µs", "0s"."""
        u = abs(self.nanoseconds)
        sign = "-" if self.nanoseconds < 0 else ""
        if u == 0:
            return "0s"
        if u < 1_000_000_000:
            for size, unit in ((1_000_000, "ms"), (1_000, "µs"), (1, "ns")):
                if u >= size:
                    return sign + _fraction(u, size) + unit
        text = _fraction(u % 60_000_000_000, 1_000_000_000) + "s"
        minutes = u // 60_000_000_000
        if minutes:
            text = f"{minutes % 60}m{text}"
            if minutes >= 60:
                text = f"{minutes // 60}h{text}"
        return sign + text


def _fraction(value: int, size: int) -> str:
    """value/size with the fraction's trailing zeros (and a bare point) left off."""
    whole, rest = divmod(value, size)
    if not rest:
        return str(whole)
    digits = len(str(size)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def duration(text: str) -> float:
    """An argparse type: a Go duration flag ("10s", "1m30s", "500ms"), in seconds."""
    try:
        return Duration.parse(text).seconds
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def go_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which upstream's boolean flags accept."""
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _seconds_text(seconds: float) -> str:
    return str(Duration(round(seconds * 1e9)))


# ------------------------------------------------------------ version and logging


def version_text() -> str:
    """What --version prints: the Kubernetes version we serve, tagged as ours (= /version)."""
    return f"Kubernetes {GIT_VERSION}"


def _verbosity(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_component_flags(parser: argparse.ArgumentParser) -> None:
    """--version, -v/--v and --logging-format, as every upstream component has them."""
    parser.add_argument(
        "--version", action="version", version=version_text(), help="print the version and exit"
    )
    parser.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        type=_verbosity,
        default=0,
        metavar="LEVEL",
        help="log verbosity, as klog's: 0 default, 2 steady-state detail, 4 debug, 5+ trace",
    )
    parser.add_argument(
        "--logging-format",
        choices=LOGGING_FORMATS,
        default="text",
        help="text: one line a message for people; json: one JSON object a line "
        "(keys ts, level, logger, msg and the message's fields)",
    )


# ------------------------------------------------------------ leader election


def add_leader_election_flags(parser: argparse.ArgumentParser, default_name: str = "") -> None:
    """Upstream's leader election flags, with upstream's defaults."""
    group = parser.add_argument_group("leader election")
    group.add_argument(
        "--leader-elect",
        type=go_bool,
        nargs="?",
        const=True,
        default=True,
        help="Start a leader election client and gain leadership before executing the main "
        "loop (default true).",
    )
    for flag, default, help_ in (
        (
            "--leader-elect-lease-duration",
            "15s",
            "How long non-leaders wait after observing a renewal before trying to take over.",
        ),
        (
            "--leader-elect-renew-deadline",
            "10s",
            "How long the leader keeps trying to renew before it stops leading.",
        ),
        (
            "--leader-elect-retry-period",
            "2s",
            "How long clients wait between attempts to acquire or renew.",
        ),
    ):
        group.add_argument(flag, type=duration, default=default, metavar="DURATION", help=help_)
    group.add_argument(
        "--leader-elect-resource-lock",
        choices=("leases",),
        default="leases",
        help="The type of resource object used for locking (only leases).",
    )
    group.add_argument(
        "--leader-elect-resource-namespace",
        default="kube-system",
        help="The namespace of the lock object.",
    )
    group.add_argument(
        "--leader-elect-resource-name",
        default=default_name,
        help="The name of the lock object.",
    )


def leader_election_from_args(args: argparse.Namespace) -> LeaderElectionConfig:
    """The parsed --leader-elect* flags."""
    return LeaderElectionConfig(
        leader_elect=args.leader_elect,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        resource_lock=args.leader_elect_resource_lock,
        resource_namespace=args.leader_elect_resource_namespace,
        resource_name=args.leader_elect_resource_name,
    )


def validate(config: LeaderElectionConfig) -> list[str]:
    """Upstream's ValidateLeaderElectionConfiguration plus client-go's timing checks, in
    upstream's words ("leaderElection.leaseDuration: Invalid value: ...")."""
    if not config.leader_elect:
        return []
    errors = []
    for field, seconds in (
        ("leaseDuration", config.lease_duration),
        ("renewDeadline", config.renew_deadline),
        ("retryPeriod", config.retry_period),
    ):
        if seconds <= 0:
            errors.append(_invalid(field, _seconds_text(seconds), "must be greater than zero"))
    if errors:
        return errors
    for field, message in timing_errors(
        config.lease_duration, config.renew_deadline, config.retry_period
    ):
        # Upstream shows the renew deadline as the value of both comparisons.
        errors.append(_invalid(field, _seconds_text(config.renew_deadline), message))
    for field, value in (
        ("resourceLock", config.resource_lock),
        ("resourceNamespace", config.resource_namespace),
        ("resourceName", config.resource_name),
    ):
        if not value:
            errors.append(_invalid(field, "", f"{field} is required"))
    return errors


def _invalid(field: str, value: str, message: str) -> str:
    return f"leaderElection.{field}: Invalid value: {_quote(value)}: {message}"


def leader_election_config(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> LeaderElectionConfig:
    """The --leader-elect* flags, validated: invalid ones end the program as argparse does."""
    config = leader_election_from_args(args)
    errors = validate(config)
    if errors:
        parser.error("invalid leader election flags: " + ", ".join(errors))
    return config
