"""Bootstrap tokens: format, Secret fields, groups, expiry, the cluster-info JWS, the CA hash,
the authenticator's checks, the token CLI's pieces and the signer's signature set."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from k8slite import bootstraptoken as bt
from k8slite.api.printers import short_human_duration
from k8slite.cmd.token import TokenError, new_token, table, token_id_of
from k8slite.controllers.bootstrapsigner import signatures
from k8slite.controllers.manager import enabled_controllers

NOW = datetime(2026, 12, 7, 9, 0, 0, tzinfo=UTC)

# A P-256 CA made with openssl; its hash computed with openssl as kubeadm documents:
# openssl x509 -pubkey -noout -in ca.pem | openssl pkey -pubin -outform der | openssl dgst -sha256
CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBejCCASGgAwIBAgIUd10x1ljgK4bXFI2DvtqgEvANFBQwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjEyMDcwOTE1NTFaGA8yMTI2MTExMzA5
MTU1MVowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABH+4vC/AjTMtH1vtDJMNqGZabN/3Dr4FYLpTAW2atNswKmA095tI86kYk4y0
GdN5AOXGtVYOQCDXMu4cpQWc7POjUzBRMB0GA1UdDgQWBBQxv5kEi9KsB7PAIA/t
qDrsbTLy2DAfBgNVHSMEGDAWgBQxv5kEi9KsB7PAIA/tqDrsbTLy2DAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHEUHTwGtwNIXcLusxmM/N4mLL/a
3nBfCKCERqVB26IvAiBSqGr5ZrlgST7v1PvdhMz1w0GVM241BYPE67gGSVsCjg==
-----END CERTIFICATE-----
"""
CA_HASH = "sha256:1b65ce36392e7bd3e6ad5e7cec9db59c08951129f63ce6254bc6791d0eda3f6d"


def test_token_format() -> None:
    token = bt.generate()
    assert bt.TOKEN_RE.match(token)
    assert bt.parse(token) == (token[:6], token[7:])
    assert bt.generate() != token
    assert bt.parse("abcdef.0123456789abcdef") == ("abcdef", "0123456789abcdef")
    for bad in (
        "ABCDEF.0123456789abcdef",
        "abcdef.0123456789abcde",
        "abcdefg.0123456789abcdef",
        "abcdef:0123456789abcdef",
        "abcdef.0123456789abcdef\n",
        "a.b.c",
    ):
        assert bt.parse(bad) is None, bad


def test_groups_and_usages_are_validated() -> None:
    bt.validate_groups(
        ["system:bootstrappers:kubeadm:default-node-token", "system:bootstrappers:a"]
    )
    for bad in ("system:bootstrappers", "system:bootstrappers:", "system:bootstrappers:x-", "x"):
        with pytest.raises(bt.InvalidTokenField, match="is invalid"):
            bt.validate_groups([bad])
    bt.validate_usages(["signing", "authentication"])
    with pytest.raises(bt.InvalidTokenField, match="valid usage options: signing, authentication"):
        bt.validate_usages(["login"])


def _secret(data: dict[str, str], name: str = "bootstrap-token-abcdef") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "kube-system"},
        "type": bt.SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_secret_round_trip_and_checks() -> None:
    token = bt.TokenSecret(
        "abcdef",
        "0123456789abcdef",
        "2026-12-08T09:00:00Z",
        "d",
        ["signing"],
        ["system:bootstrappers:x"],
    )
    assert bt.from_secret(token.to_secret()) == token  # type: ignore[arg-type]
    good = {"token-id": "abcdef", "token-secret": "0123456789abcdef"}
    assert bt.from_secret(_secret(good)) is not None
    # The name must be bootstrap-token-<token-id>, the type the bootstrap one, both fields
    # of the right form.
    assert bt.from_secret(_secret(good, "bootstrap-token-zzzzzz")) is None
    assert bt.from_secret({**_secret(good), "type": "Opaque"}) is None
    assert bt.from_secret(_secret({**good, "token-secret": "short"})) is None
    assert bt.from_secret(_secret({**good, "token-id": "ABCDEF"}, "bootstrap-token-ABCDEF")) is None
    groups = bt.from_secret(
        _secret({**good, "auth-extra-groups": "system:bootstrappers:b, system:bootstrappers:a"})
    )
    assert groups is not None
    assert groups.groups() == [
        "system:bootstrappers",
        "system:bootstrappers:a",
        "system:bootstrappers:b",
    ]


def test_expiry() -> None:
    def token(expiration: str | None) -> bt.TokenSecret:
        return bt.TokenSecret("abcdef", "0123456789abcdef", expiration)

    assert not token(None).expired(NOW)
    assert not token("2026-12-07T09:00:01Z").expired(NOW)
    assert token("2026-12-07T09:00:00Z").expired(NOW)
    assert not token("2026-12-07T10:30:00+01:00").expired(NOW)
    # An expiration that does not parse is already past, as upstream.
    assert token("tomorrow").expired(NOW)
    assert bt.format_time(NOW + timedelta(hours=24)) == "2026-12-08T09:00:00Z"


def test_detached_jws_matches_a_hand_derived_vector() -> None:
    # RFC 7515 by hand: header {"alg":"HS256","kid":"abcdef"} (go-jose: keys sorted, no
    # spaces) base64url without padding; payload "hello" -> aGVsbG8; the MAC is
    # HMAC-SHA256(key=token secret, "<header>.<payload>"), computed independently with
    #   printf '%s' "$H.$P" | openssl dgst -sha256 -hmac 0123456789abcdef -binary \
    #     | basenc --base64url
    header = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9"
    assert base64.urlsafe_b64decode(header + "==") == b'{"alg":"HS256","kid":"abcdef"}'
    expected = header + "..MxsnbCjBaYzcbNIFa06F-wuF9LX26rhMlrL4zA1511s"
    assert bt.detached_jws("hello", "abcdef", "0123456789abcdef") == expected
    assert bt.verify_detached_jws(expected, "hello", "abcdef", "0123456789abcdef")
    assert not bt.verify_detached_jws(expected, "hello!", "abcdef", "0123456789abcdef")
    assert not bt.verify_detached_jws(expected, "hello", "abcdef", "0123456789abcdeg")


def test_ca_cert_hash_is_kubeadms() -> None:
    assert bt.ca_cert_hash(CA_PEM) == CA_HASH


def test_signer_signs_with_signing_tokens_only() -> None:
    def secret(token_id: str, **data: str) -> dict[str, object]:
        return _secret(
            {"token-id": token_id, "token-secret": "0123456789abcdef", **data},
            f"bootstrap-token-{token_id}",
        )

    secrets = [
        secret("aaaaaa", **{"usage-bootstrap-signing": "true"}),
        secret("bbbbbb", **{"usage-bootstrap-authentication": "true"}),
        secret(
            "cccccc", **{"usage-bootstrap-signing": "true", "expiration": "2026-12-07T08:00:00Z"}
        ),
        secret(
            "dddddd", **{"usage-bootstrap-signing": "true", "expiration": "2026-12-07T10:00:00Z"}
        ),
    ]
    wanted, soonest = signatures("cfg", secrets, NOW)  # type: ignore[arg-type]
    assert wanted == {
        "jws-kubeconfig-aaaaaa": bt.detached_jws("cfg", "aaaaaa", "0123456789abcdef"),
        "jws-kubeconfig-dddddd": bt.detached_jws("cfg", "dddddd", "0123456789abcdef"),
    }
    assert soonest == 3600


def test_token_cli_pieces() -> None:
    made = new_token(None, 3600, ["signing", "authentication"], [bt.DEFAULT_NODE_GROUP], "x", NOW)
    assert made.expiration == "2026-12-07T10:00:00Z" and bt.TOKEN_RE.match(made.token)
    assert new_token("abcdef.0123456789abcdef", 0, ["signing"], [], "", NOW).expiration is None
    with pytest.raises(TokenError, match="was not of the form"):
        new_token("nope", 0, ["signing"], [], "", NOW)
    with pytest.raises(TokenError, match='unless --usages includes "authentication"'):
        new_token(None, 0, ["signing"], [bt.DEFAULT_NODE_GROUP], "", NOW)
    with pytest.raises(bt.InvalidTokenField):
        new_token(None, 0, ["authentication"], ["admins"], "", NOW)
    assert token_id_of("abcdef") == "abcdef"
    assert token_id_of("abcdef.0123456789abcdef") == "abcdef"
    with pytest.raises(TokenError, match="didn't match pattern"):
        token_id_of("abcdef.")
    fixed = new_token(
        "zzzzzz.0123456789abcdef",
        3600,
        ["signing", "authentication"],
        [bt.DEFAULT_NODE_GROUP],
        "x",
        NOW,
    )
    out = table([fixed, bt.TokenSecret("aaaaaa", "0123456789abcdef")], NOW).splitlines()
    assert out[0].split() == ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA", "GROUPS"]
    assert out[1].split() == [
        "aaaaaa.0123456789abcdef",
        "<forever>",
        "<never>",
        "<none>",
        "<none>",
        "<none>",
    ]
    assert out[2].split() == [
        "zzzzzz.0123456789abcdef",
        "1h",
        "2026-12-07T10:00:00Z",
        "signing,authentication",
        "x",
        bt.DEFAULT_NODE_GROUP,
    ]
    assert [short_human_duration(s) for s in (59, 61, 7200, 86400 * 3, -5)] == [
        "59s",
        "1m",
        "2h",
        "3d",
        "<invalid>",
    ]


def test_bootstrap_controllers_are_off_by_default() -> None:
    every = enabled_controllers(["*"])
    assert "token-cleaner-controller" not in every and "bootstrap-signer-controller" not in every
    chosen = enabled_controllers(["*", "bootstrapsigner", "tokencleaner"])
    assert {"token-cleaner-controller", "bootstrap-signer-controller"} <= set(chosen)
