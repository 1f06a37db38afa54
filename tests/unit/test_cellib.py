"""The Kubernetes CEL libraries as rules evaluate them (through the binding's context)."""

from __future__ import annotations

import pytest

from k8slite.api.celrules import compile_expression, eval_error

TRUE = [
    "[1, 2, 2, 5].isSorted() && !['b', 'a'].isSorted()",
    "['a', 'b', 'a'].indexOf('a') == 0 && ['a', 'b', 'a'].lastIndexOf('a') == 2",
    "'abcb'.indexOf('b') == 1 && 'abcb'.lastIndexOf('b') == 3",
    "'ab12cd34'.find('[0-9]+') == '12' && 'ab12cd34'.findAll('[0-9]+') == ['12', '34']",
    "'ab12cd34'.findAll('[0-9]+', 1) == ['12'] && 'abc'.find('[0-9]') == ''",
    "quantity('1Gi').compareTo(quantity('500Mi')) == 1 && quantity('1').isLessThan(quantity('2'))",
    "quantity('1.5').add(quantity('500m')).asInteger() == 2 && !quantity('1500m').isInteger()",
    "quantity('2').sub(1).asInteger() == 1 && quantity('-1').sign() == -1",
    "isQuantity('64Mi') && !isQuantity('64x') && quantity('100m').asApproximateFloat() == 0.1",
    "url('https://u@example.com:8443/a%20b?x=1&x=2').getHost() == 'example.com:8443'",
    "url('https://example.com:8443/').getHostname() == 'example.com'",
    "url('https://[::1]:80/p').getHostname() == '::1'",
    "url('https://[::1]:80/p').getPort() == '80'",
    "url('https://e.com/p?x=1&x=2&y=').getQuery() == {'x': ['1', '2'], 'y': ['']}",
    "url('/just/a/path').getScheme() == '' && isURL('https://e.com') && !isURL('e.com')",
    "ip('10.0.0.1').family() == 4 && ip('::1').isLoopback() && !isIP('1.2.3')",
    "ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:db8::0:1')",
    "ip('169.254.1.1').isLinkLocalUnicast() && ip('192.0.2.1').isGlobalUnicast()",
    "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && !cidr('10.0.0.0/8').containsIP('11.0.0.1')",
    "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')",
    "!cidr('10.0.0.0/16').containsCIDR('10.0.0.0/8')",
    "cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8') && cidr('10.1.2.3/8').prefixLength() == 8",
    "cidr('10.1.2.3/8').ip() == ip('10.1.2.3') && isCIDR('::/0') && !isCIDR('10.0.0.0')",
    "math.greatest(1, 2) == 2",
]


@pytest.mark.parametrize("source", TRUE)
def test_library_functions(source: str) -> None:
    assert compile_expression(source).run({}) is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "quantity('abc') == quantity('1')",
            "quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        ("ip('fe80::1%eth0').family() == 6", "IP address with zone value is not allowed"),
        ("ip('::ffff:1.2.3.4').family() == 6", "IPv4-mapped IPv6 address is not allowed"),
    ],
)
def test_library_errors_read_as_upstream(source: str, message: str) -> None:
    with pytest.raises(RuntimeError) as e:
        compile_expression(source).run({})
    assert eval_error(e.value) == message
