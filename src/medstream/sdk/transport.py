"""The SDK's HTTP transport: one pooled httpx client, bearer tokens refreshed on their own, typed errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from medstream.errors import AuthenticationError, MedstreamError, UnavailableError, from_payload

# Refresh the access token when it has less than this many seconds left.
_REFRESH_MARGIN_SECONDS = 30.0


class Transport:
    """Authenticated JSON calls to one Medstream server."""

    def __init__(
        self,
        base_urls: str | Sequence[str],
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ValueError("at least one server URL is needed")
        self.urls = [url.rstrip("/") for url in urls]
        self._current = 0
        self._username = username
        self._password = password
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        """The server node in use; `fail_over()` moves to the next one."""
        return self.urls[self._current]

    @property
    def credentials(self) -> tuple[str, str]:
        """The login and password this transport logs in with (a vault passphrase must not be the password)."""
        return self._username, self._password

    def fail_over(self) -> None:
        """Use the next server URL (the nodes of one deployment are interchangeable)."""
        self._current = (self._current + 1) % len(self.urls)

    async def login(self) -> None:
        payload = await self._send(
            "POST", "/rest/v1/auth/login", {"username": self._username, "password": self._password}
        )
        self._store_tokens(payload)

    async def access_token(self) -> str:
        """A valid access token, refreshed (or logged in again) first when it is about to expire."""
        async with self._lock:
            if self._token is None or time.monotonic() > self._expires_at - _REFRESH_MARGIN_SECONDS:
                await self._renew()
            assert self._token is not None
            return self._token

    async def renewed_token(self, refused: str | None) -> str:
        """A valid access token other than `refused`, which the server no longer takes (it expired, or a logout,
        a password or a role change ended its session): renewed (refreshed, else logged in again) unless another
        call renewed it already."""
        async with self._lock:
            if self._token is None or self._token == refused:
                await self._renew()
            assert self._token is not None
            return self._token

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Call the server; a 401 renews the token once and retries; an error answer raises its typed error."""
        token = await self.access_token()
        try:
            return await self._send(method, path, body, params, token=token)
        except AuthenticationError:
            return await self._send(method, path, body, params, token=await self.renewed_token(token))

    def password_changed(self, login: str, password: str) -> None:
        """A user's password was set: if it is this transport's user, its next login uses it (the change ended
        the sessions of that user on the server)."""
        if login == self._username:
            self._password = password

    async def logout(self) -> None:
        """End every session of this user on the server (all its tokens, wherever issued); a later call logs in
        again."""
        async with self._lock:
            token, self._token, self._refresh_token = self._token, None, None
            if token is not None:
                await self._send("POST", "/rest/v1/auth/logout", token=token)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request_any_node(
        self, method: str, path: str, content: bytes | None, params: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        """Send to the current node; when it cannot be connected to (so nothing was sent), try the next ones."""
        failure: Exception | None = None
        for _ in self.urls:
            try:
                return await self._client.request(
                    method, self.base_url + path, content=content, params=params, headers=headers
                )
            except httpx.ConnectError as exc:
                failure = exc
                self.fail_over()
            except httpx.TransportError as exc:
                raise UnavailableError(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        raise UnavailableError(f"cannot reach any of {', '.join(self.urls)}: {failure!r}") from failure

    async def _renew(self) -> None:
        if self._refresh_token is not None:
            try:
                payload = await self._send("POST", "/rest/v1/auth/refresh", {"refreshToken": self._refresh_token})
                self._store_tokens(payload)
                return
            except AuthenticationError:
                pass  # the refresh token expired or its user changed: log in again
        await self.login()

    def _store_tokens(self, payload: Any) -> None:
        # Each refresh uses its refresh token up and answers with the next one: the server ends the session
        # when one is sent twice.
        self._token = str(payload["token"])
        self._refresh_token = str(payload["refreshToken"])
        self._expires_at = time.monotonic() + float(payload.get("expiresIn", 60))

    async def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        response = await self._request_any_node(method, path, content, params, headers)
        if response.status_code >= 400:
            raise _error_of(response)
        return orjson.loads(response.content) if response.content else None


def _error_of(response: httpx.Response) -> MedstreamError:
    try:
        payload: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = response.text
    return from_payload(response.status_code, payload)
