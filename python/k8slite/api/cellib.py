"""The Kubernetes CEL libraries most used in CRD rules and policies, for the binding's
evaluation context: lists (`isSorted`, `indexOf`/`lastIndexOf` on lists besides the
strings extension's), regular expressions (`find`, `findAll`), `quantity`, `url`, `ip`
and `cidr`.

The binding converts every function result into a CEL value and has no opaque types, so a
quantity, URL, IP or CIDR is a one-entry map ({"@quantity": "1Gi"}) that only these
functions read: `quantity("1Gi").compareTo(quantity("500Mi"))`, `url(u).getHost()`,
`cidr(c).containsIP(ip(a))` work as upstream's, while `type()` of one says map and
`string()` of one is not supported. Errors are raised as upstream words them; the binding
reports them as evaluation errors of the rule.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from k8slite.api.quantity import QuantityError, parse_quantity

_QUANTITY, _URL, _IP, _CIDR = "@quantity", "@url", "@ip", "@cidr"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _unwrap(value: Any, tag: str, what: str) -> Any:
    if isinstance(value, dict) and len(value) == 1 and tag in value:
        return value[tag]
    raise TypeError(f"no such overload: {what}")


# ------------------------------------------------------------------------- lists


def is_sorted(items: list[Any]) -> bool:
    return all(a <= b for a, b in zip(items, items[1:], strict=False))


def index_of(container: Any, item: Any, offset: int = 0) -> int:
    """indexOf of the lists library (a list) or of the strings extension (a string)."""
    if isinstance(container, list):
        for i, value in enumerate(container):
            if value == item and type(value) is type(item):
                return i
        return -1
    if offset < 0 or offset > len(container):
        raise ValueError(f"index out of range: {offset}")
    return int(container.find(item, offset))


def last_index_of(container: Any, item: Any, offset: int | None = None) -> int:
    if isinstance(container, list):
        for i in range(len(container) - 1, -1, -1):
            if container[i] == item and type(container[i]) is type(item):
                return i
        return -1
    end = len(container) if offset is None else offset
    if end < 0 or end > len(container):
        raise ValueError(f"index out of range: {end}")
    return int(container.rfind(item, 0, end + len(item)))


# ------------------------------------------------------------------------- regex


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"error parsing regex {pattern!r}: {e}") from None


def find(text: str, pattern: str) -> str:
    m = _regex(pattern).search(text)
    return m.group(0) if m else ""


def find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    if limit == 0:
        return []
    found = [m.group(0) for m in _regex(pattern).finditer(text)]
    return found if limit < 0 else found[:limit]


# ---------------------------------------------------------------------- quantity


def quantity(text: str) -> dict[str, str]:
    parse_quantity(text)  # raises QuantityError with upstream's message
    return {_QUANTITY: text}


def is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True


def _q(value: Any) -> Fraction:
    return parse_quantity(_unwrap(value, _QUANTITY, "quantity"))


def _q_or_int(value: Any) -> Fraction:
    return Fraction(value) if isinstance(value, int) else _q(value)


def _shown(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    milli = value * 1000
    if milli.denominator == 1:
        return f"{milli.numerator}m"
    nano = value * 10**9
    return f"{math.ceil(nano)}n"


def compare_to(a: Any, b: Any) -> int:
    x, y = _q(a), _q(b)
    return (x > y) - (x < y)


def q_add(a: Any, b: Any) -> dict[str, str]:
    return {_QUANTITY: _shown(_q(a) + _q_or_int(b))}


def q_sub(a: Any, b: Any) -> dict[str, str]:
    return {_QUANTITY: _shown(_q(a) - _q_or_int(b))}


def as_integer(value: Any) -> int:
    q = _q(value)
    if q.denominator != 1 or not -(2**63) <= q.numerator < 2**63:
        raise ValueError("cannot convert value to integer")
    return q.numerator


def is_integer(value: Any) -> bool:
    q = _q(value)
    return q.denominator == 1 and -(2**63) <= q.numerator < 2**63


def sign(value: Any) -> int:
    q = _q(value)
    return (q > 0) - (q < 0)


# --------------------------------------------------------------------------- url


def url(text: str) -> dict[str, str]:
    _parse_url(text)
    return {_URL: text}


def _parse_url(text: str) -> Any:
    # As Go's url.ParseRequestURI: an absolute URI or an absolute path.
    parts = urlsplit(text)
    if not (parts.scheme or text.startswith("/")) or " " in text:
        raise ValueError(
            f'URL parse error during conversion from string: parse "{text}": invalid URI for '
            "request"
        )
    return parts


def is_url(text: str) -> bool:
    try:
        _parse_url(text)
    except ValueError:
        return False
    return True


def _u(value: Any) -> Any:
    return urlsplit(_unwrap(value, _URL, "url"))


def get_scheme(value: Any) -> str:
    return str(_u(value).scheme)


def get_host(value: Any) -> str:
    return str(_u(value).netloc.rpartition("@")[2])


def get_hostname(value: Any) -> str:
    host = get_host(value)
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host


def get_port(value: Any) -> str:
    host = get_host(value)
    tail = host[host.find("]") + 1 :] if host.startswith("[") else host
    return tail.rpartition(":")[2] if ":" in tail else ""


def get_escaped_path(value: Any) -> str:
    return quote(str(_u(value).path), safe="/:@!$&'()*+,;=-._~%")


def get_query(value: Any) -> dict[str, list[str]]:
    return {k: list(v) for k, v in parse_qs(_u(value).query, keep_blank_values=True).items()}


# ---------------------------------------------------------------------- ip, cidr


def _parse_ip(text: str) -> IPAddress:
    if "%" in text:
        raise ValueError("IP address with zone value is not allowed")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as e:
        raise ValueError(
            f"IP Address {text!r} parse error during conversion from string: {e}"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError("IPv4-mapped IPv6 address is not allowed")
    return addr


def ip(value: Any) -> dict[str, str]:
    """ip("10.0.0.1"), or cidr(...).ip(): the CIDR's address."""
    if isinstance(value, dict):
        return {_IP: _unwrap(value, _CIDR, "ip").split("/")[0]}
    return {_IP: str(_parse_ip(value))}


def is_ip(text: str) -> bool:
    try:
        _parse_ip(text)
    except ValueError:
        return False
    return True


def is_canonical(text: str) -> bool:
    return str(_parse_ip(text)) == text


def _ip(value: Any) -> IPAddress:
    if isinstance(value, str):
        return _parse_ip(value)
    return ipaddress.ip_address(_unwrap(value, _IP, "ip"))


def family(value: Any) -> int:
    return _ip(value).version


def _ip_test(test: Callable[[IPAddress], bool]) -> Callable[[Any], bool]:
    return lambda value: bool(test(_ip(value)))


def _parse_cidr(text: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(text, strict=False)
        _parse_ip(text.split("/")[0])
    except ValueError as e:
        raise ValueError(
            f"network address {text!r} parse error during conversion from string: {e}"
        ) from None
    if "/" not in text:
        raise ValueError(f"network address {text!r} parse error during conversion from string")
    return net


def cidr(text: str) -> dict[str, str]:
    _parse_cidr(text)
    return {_CIDR: text}


def is_cidr(text: str) -> bool:
    try:
        _parse_cidr(text)
    except ValueError:
        return False
    return True


def _net(value: Any) -> IPNetwork:
    return _parse_cidr(value if isinstance(value, str) else _unwrap(value, _CIDR, "cidr"))


def contains_ip(net: Any, addr: Any) -> bool:
    a = _ip(addr)
    n = _net(net)
    return a.version == n.version and a in n


def contains_cidr(net: Any, other: Any) -> bool:
    n, o = _net(net), _net(other)
    return n.version == o.version and o.subnet_of(n)  # type: ignore[arg-type]


def masked(value: Any) -> dict[str, str]:
    return {_CIDR: str(_net(value))}


def prefix_length(value: Any) -> int:
    return _net(value).prefixlen


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isSorted": is_sorted,
    "indexOf": index_of,
    "lastIndexOf": last_index_of,
    "find": find,
    "findAll": find_all,
    "quantity": quantity,
    "isQuantity": is_quantity,
    "compareTo": compare_to,
    "isGreaterThan": lambda a, b: compare_to(a, b) > 0,
    "isLessThan": lambda a, b: compare_to(a, b) < 0,
    "add": q_add,
    "sub": q_sub,
    "asInteger": as_integer,
    "asApproximateFloat": lambda q: float(_q(q)),
    "isInteger": is_integer,
    "sign": sign,
    "url": url,
    "isURL": is_url,
    "getScheme": get_scheme,
    "getHost": get_host,
    "getHostname": get_hostname,
    "getPort": get_port,
    "getEscapedPath": get_escaped_path,
    "getQuery": get_query,
    "ip": ip,
    "isIP": is_ip,
    "ip.isCanonical": is_canonical,
    "family": family,
    "isUnspecified": _ip_test(lambda a: a.is_unspecified),
    "isLoopback": _ip_test(lambda a: a.is_loopback),
    "isLinkLocalMulticast": _ip_test(lambda a: a.is_multicast and a.is_link_local),
    "isLinkLocalUnicast": _ip_test(lambda a: a.is_link_local and not a.is_multicast),
    "isGlobalUnicast": _ip_test(
        lambda a: (
            not (a.is_multicast or a.is_loopback or a.is_unspecified or a.is_link_local)
            and a != ipaddress.IPv4Address("255.255.255.255")
        )
    ),
    "cidr": cidr,
    "isCIDR": is_cidr,
    "containsIP": contains_ip,
    "containsCIDR": contains_cidr,
    "masked": masked,
    "prefixLength": prefix_length,
}


def add_kubernetes_library(context: Any) -> None:
    for name, function in FUNCTIONS.items():
        context.add_function(name, function)
