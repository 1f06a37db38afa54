"""Who may use the dashboard: the holder of the per-start session secret, from its own pages.

The server runs on loopback with the user's credentials, so anything that can reach it acts
as the user. Three guards keep other local users and other web pages out:

- the secret printed in the URL is exchanged once for an HttpOnly, SameSite=Strict cookie, and
  every other request must carry that cookie (403 otherwise);
- requests another site's page started are refused: an Origin that is not ours, a
  Sec-Fetch-Site other than same-origin or none (typed in, or opened from the terminal);
- a Host that is not the loopback address we serve keeps DNS-rebinding pages out.

Responses carry a strict Content-Security-Policy (scripts only from our own files).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import CookieError, SimpleCookie

from k8slite.component.serving import Request, Response, text

COOKIE_PREFIX = "k8slite-dashboard-"
SESSION_PARAM = "session"
# Open without the secret: the health check and the page that exchanges the secret.
PUBLIC_PATHS = frozenset({"/healthz"})

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # The secret is in the first URL: never let it leak in a Referer.
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def cookie_name(secret: str) -> str:
    """The session cookie's name, its own for each dashboard: browsers keep cookies per host,
    not per port, so two dashboards on one machine (`k8slite up`'s and `k8slite
    dashboard`'s) with one name would each overwrite the other's session."""
    return COOKIE_PREFIX + hashlib.sha256(secret.encode()).hexdigest()[:12]


class SessionGuard:
    """The authorizer of the dashboard's ComponentServer."""

    def __init__(self, secret: str, hosts: frozenset[str]) -> None:
        self.secret = secret
        self.cookie = cookie_name(secret)
        # Host header values we answer to ("127.0.0.1:8001", "localhost:8001").
        self.hosts = hosts

    def url(self, base: str) -> str:
        """The address to open: it carries the secret, exchanged for the cookie."""
        return f"{base}/?{SESSION_PARAM}={self.secret}"

    def _matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.secret.encode())

    def has_cookie(self, req: Request) -> bool:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(req.headers.get("cookie", ""))
        except CookieError:  # a malformed Cookie header is as good as none
            return False
        morsel = cookie.get(self.cookie)
        return self._matches(morsel.value if morsel is not None else None)

    def cross_origin(self, req: Request) -> str | None:
        """Why the request comes from elsewhere, or None."""
        host = req.headers.get("host", "")
        if host not in self.hosts:
            return f"unexpected Host {host!r}"
        origin = req.headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return f"cross-origin request from {origin!r}"
        site = req.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request ({site})"
        return None

    async def authorize(self, req: Request) -> Response | None:
        if req.path in PUBLIC_PATHS:
            return None
        why = self.cross_origin(req)
        if why is not None:
            return forbidden(why)
        if req.path == "/" and self._matches(req.arg(SESSION_PARAM)):
            return None
        if not self.has_cookie(req):
            return forbidden("no dashboard session: open the address `k8slite dashboard` printed")
        if req.method == "POST" and req.headers.get("origin") is None:
            # Browsers send Origin on every POST; one without it did not come from our page.
            return forbidden("a POST without Origin")
        return None

    def login(self) -> Response:
        """The answer to the secret URL: set the cookie and move to a URL without it."""
        return Response(
            303,
            b"",
            headers={
                **SECURITY_HEADERS,
                "location": "/cluster",
                "set-cookie": f"{self.cookie}={self.secret}; HttpOnly; SameSite=Strict; Path=/",
            },
        )


def forbidden(why: str) -> Response:
    response = text(403, f"forbidden: {why}")
    response.headers.update(SECURITY_HEADERS)
    return response
