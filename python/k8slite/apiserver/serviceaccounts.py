"""Service-account tokens in the API server: TokenRequest, TokenReview, OIDC discovery.

POST serviceaccounts/<name>/token signs a JWT with the cluster's service-account key,
optionally bound to a Pod, Secret or Node; POST tokenreviews says who a token is;
/.well-known/openid-configuration and /openid/v1/jwks let others verify the tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from quart import Response
from quart_trio import QuartTrio

from k8slite._native import dumps
from k8slite.api import errors, meta
from k8slite.apiserver import rest
from k8slite.apiserver.authn import UserInfo
from k8slite.apiserver.core import ApiCore
from k8slite.apiserver.http import Request
from k8slite.apiserver.registry import Registry
from k8slite.apiserver.requestinfo import RequestInfo
from k8slite.apiserver.tokenauth import TokenAuthenticator
from k8slite.component.objects import Obj, is_deleting
from k8slite.serviceaccount import claims as sa
from k8slite.serviceaccount.jwt import PrivateKey, PublicKey, jwk, sign

AUTHN_GROUP = "authentication.k8s.io"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"


@dataclass
class ServiceAccountTokens:
    """Signs tokens for the API's service accounts and answers reviews of them."""

    core: ApiCore
    signing_key: PrivateKey
    public_keys: list[PublicKey]
    issuers: list[str]
    audiences: list[str]
    # Where /openid/v1/jwks is reachable (upstream's --service-account-jwks-uri).
    jwks_uri: str = ""
    # Upstream's --service-account-max-token-expiration; 0: no cap.
    max_expiration: int = 0
    # Upstream's --service-account-extend-token-expiration.
    extend_expiration: bool = True
    authenticator: TokenAuthenticator = field(init=False)
    # Other token authenticators TokenReview consults first (bootstrap tokens): they know
    # no audiences, so they hold the API's, as upstream's audience-agnostic wrapper.
    agnostic: list[Callable[[str], UserInfo | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authenticator = TokenAuthenticator(
            self.core, self.public_keys, self.issuers, self.audiences
        )

    @property
    def issuer(self) -> str:
        return self.issuers[0]

    def _get(self, group: str, plural: str, namespace: str | None, name: str) -> Obj:
        return self.core.registries[(group, plural)].get(namespace, name)

    async def token_request(self, reg: Registry, req: Request, info: RequestInfo) -> bytes:
        """POST serviceaccounts/<name>/token: a TokenRequest answered with a signed JWT."""
        assert info.name is not None and info.namespace is not None
        name, namespace = info.name, info.namespace
        body = rest.decode_body(req, await req.body())
        if not isinstance(body, dict) or body.get("kind") not in (None, "TokenRequest"):
            raise errors.bad_request("the body of the request must be a TokenRequest")
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_EXPIRATION if seconds is None else seconds
        _validate(name, seconds, spec.get("audiences"))
        if self.max_expiration and seconds > self.max_expiration:
            seconds = self.max_expiration
        account = reg.get(namespace, name)
        audiences = list(spec.get("audiences") or self.audiences)
        ref = spec.get("boundObjectRef")
        bound = self._bound(name, namespace, account, ref) if ref else {}
        now = int(time.time())
        expires = now + seconds
        warn_after = None
        if (
            self.extend_expiration
            and "pod" in bound
            and seconds == sa.WARN_ONLY_SECONDS
            and set(audiences) <= set(self.audiences)
        ):
            # The kubelet's own tokens: valid a year, but the API warns of them after 3607 s.
            warn_after, expires = expires, now + sa.EXTENDED_SECONDS
        token = sign(
            self.signing_key,
            sa.bound(
                issuer=self.issuer,
                audiences=audiences,
                now=now,
                expires=expires,
                account=account,
                warn_after=warn_after,
                **bound,
            ),
        )
        out_spec: Obj = {"audiences": audiences, "expirationSeconds": seconds}
        if ref:
            kind = str(ref.get("kind") or "")
            target = bound[kind.lower()]
            out_spec["boundObjectRef"] = {
                "kind": kind,
                "apiVersion": ref.get("apiVersion") or "v1",
                "name": target["metadata"]["name"],
                "uid": target["metadata"]["uid"],
            }
        out = {
            "kind": "TokenRequest",
            "apiVersion": f"{AUTHN_GROUP}/v1",
            # Upstream answers with the request's own (empty) metadata, named.
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": out_spec,
            "status": {
                "token": token,
                "expirationTimestamp": meta.format_time(datetime.fromtimestamp(now + seconds, UTC)),
            },
        }
        return dumps(out)

    def _bound(self, name: str, namespace: str, account: Obj, ref: Obj) -> dict[str, Obj]:
        """The object a token is bound to (and a pod's node), checked as upstream does."""
        if not isinstance(ref, dict):
            raise errors.bad_request("spec.boundObjectRef must be an object")
        kind, api_version = str(ref.get("kind") or ""), str(ref.get("apiVersion") or "v1")
        target = str(ref.get("name") or "")
        if api_version != "v1" or kind not in ("Pod", "Secret", "Node"):
            raise errors.bad_request(
                f"cannot bind token to object of type {api_version}, Kind={kind}"
            )
        plural = kind.lower() + "s"
        obj = self._get("", plural, None if kind == "Node" else namespace, target)
        uid = obj["metadata"].get("uid")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(
                kind,
                target,
                "",
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                "in record. The object might have been deleted and then recreated",
            )
        if is_deleting(obj):
            raise errors.bad_request(f"cannot bind token to a {kind} that is being deleted")
        if kind == "Node":
            return {"node": obj}
        if kind == "Secret":
            return {"secret": obj}
        if (obj.get("spec") or {}).get("serviceAccountName") != name:
            raise errors.bad_request(
                f'cannot bind token for serviceaccount "{name}" to pod running with '
                "different serviceaccount name."
            )
        out = {"pod": obj}
        node_name = (obj.get("spec") or {}).get("nodeName")
        if node_name:
            try:
                out["node"] = self._get("", "nodes", None, node_name)
            except errors.ApiError:
                # Upstream names the node even when it cannot look it up.
                out["node"] = {"metadata": {"name": node_name, "uid": ""}}
        return out

    async def token_review(self, req: Request, info: RequestInfo) -> tuple[int, bytes]:
        """POST tokenreviews: whether a token authenticates, and as whom."""
        if info.verb != "create" or info.subresource:
            raise errors.method_not_allowed()
        obj = rest.check_type_meta(rest.decode_body(req, await req.body()), info.resource)
        spec = obj.get("spec") or {}
        token = spec.get("token") if isinstance(spec, dict) else None
        if not isinstance(token, str) or not token:
            raise errors.bad_request(f"token is required for TokenReview in {AUTHN_GROUP}/v1")
        audiences = spec.get("audiences") or []
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise errors.bad_request("spec.audiences must be a list of strings")
        user, held = self._review(token, audiences)
        status: Obj
        if user is None:
            status = {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        else:
            user_info: Obj = {"username": user.name, "uid": user.uid, "groups": list(user.groups)}
            if user.extra:
                user_info["extra"] = user.extra
            status = {"authenticated": True, "user": user_info, "audiences": held}
        metadata = obj.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        out = {
            "kind": "TokenReview",
            "apiVersion": f"{AUTHN_GROUP}/v1",
            "metadata": {**metadata, "creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return 201, dumps(out)

    def _review(self, token: str, audiences: list[str]) -> tuple[UserInfo | None, list[str]]:
        for authenticate in self.agnostic:
            user = authenticate(token)
            if user is not None:
                held = sorted(set(audiences) & set(self.audiences)) if audiences else None
                if held == []:
                    return None, []
                return user, held if held is not None else sorted(self.audiences)
        return self.authenticator.review(token, audiences)

    def register_discovery(self, app: QuartTrio) -> None:
        """Upstream's service-account issuer discovery (OIDC) documents."""
        keys = {"keys": [jwk(k) for k in self.public_keys]}
        headers = {"Cache-Control": "public, max-age=3600"}

        algorithms = sorted({jwk(k)["alg"] for k in self.public_keys})

        @app.route(OPENID_CONFIGURATION)
        async def openid_configuration() -> Response:
            config = {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": algorithms,
            }
            return Response(dumps(config), content_type="application/json", headers=headers)

        @app.route(JWKS_PATH)
        async def jwks() -> Response:
            return Response(dumps(keys), content_type="application/jwk-set+json", headers=headers)


def _validate(name: str, seconds: object, audiences: object) -> None:
    def invalid(field: str, message: str) -> errors.ApiError:
        return errors.invalid(
            "TokenRequest",
            name,
            [{"reason": "FieldValueInvalid", "field": field, "message": message}],
            AUTHN_GROUP,
        )

    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise invalid("spec.expirationSeconds", "Invalid value: must be an integer")
    if seconds < MIN_EXPIRATION:
        raise invalid(
            "spec.expirationSeconds",
            f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
        )
    if seconds > MAX_EXPIRATION:
        raise invalid(
            "spec.expirationSeconds",
            f"Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds",
        )
    if audiences is not None and (
        not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences)
    ):
        raise invalid("spec.audiences", "Invalid value: must be a list of strings")
