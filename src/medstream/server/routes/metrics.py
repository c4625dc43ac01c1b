"""GET /metrics: the node's Prometheus metrics (server/metrics.py), for the operator's scraper.

Who may scrape: a client on loopback (unless `metrics_loopback` is off), and any client that sends the metrics
token (`metrics_token`) as its bearer token. Another is refused with the JSON error of every other route: 401
when a token is set (none was sent, or the wrong one), 403 when none is (only loopback may scrape). A wrong token
is refused even from loopback: a scraper configured with it is misconfigured, and should hear so.

It is the operator's route, not the API's: the OpenAPI document leaves it out, as it does /docs.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medstream.errors import AuthenticationError, ForbiddenError
from medstream.server.metrics import Metrics
from medstream.server.settings import Settings, env_of
from medstream.server.state import bearer_token

PATH = "/metrics"


def on_loopback(host: str | None) -> bool:
    """Is `host` (a client address as the server sees it) a loopback address? An IPv4 address mapped into IPv6
    counts as the IPv4 one; a name that is not an address does not."""
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_scraper(request: Request, *, token: str | None, loopback: bool) -> None:
    """Let the scrape through, or raise the error that refuses it."""
    presented = bearer_token(request)
    if token is not None and presented is not None:
        if hmac.compare_digest(presented.encode(), token.encode()):
            return
        raise AuthenticationError(f"wrong metrics token: {PATH} takes the token of {env_of('metrics_token')}")
    if loopback and on_loopback(request.client.host if request.client is not None else None):
        return
    if token is None:
        where = "loopback clients only" if loopback else "no client (metrics_loopback is off and no token is set)"
        raise ForbiddenError(f"{PATH} is served to {where}: set {env_of('metrics_token')} to scrape from elsewhere")
    raise AuthenticationError(f"{PATH} needs the metrics token: `Authorization: Bearer <{env_of('metrics_token')}>`")


def metrics_route(metrics: Metrics, settings: Settings) -> Route:
    token, loopback = settings.metrics_token, settings.metrics_loopback

    async def scrape(request: Request) -> Response:
        check_scraper(request, token=token, loopback=loopback)
        await metrics.read_log_head()
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    return Route(PATH, scrape, methods=["GET"], name="metrics")
