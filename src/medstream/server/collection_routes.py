"""The routes of REST collections, found by their path's prefix: `CollectionRoutes`, one Starlette route in the
app's router for a run of collections.

Each collection is served as a `Route` for its root path and a `Mount` for the paths under it would serve it,
with the same Starlette `Route`s (each with its full path) and the same outcomes: under a collection's prefix,
the first route that fully matches serves the request, else the first that matches all but the method answers
405, else the request is answered as the Mount's router answers it (a redirect to the path without or with its
trailing slash when that one is served, else 404); a path outside every prefix is left to the routes after.

What it saves is the search and its layers: the collection comes from a dict by the path's prefix, and only the
collection's routes with as many path segments as the request are tried (a parameter matches one segment),
where the app's router tried each collection's root and Mount in turn and each Mount's own router its routes,
every step a Python call of its own (routing was a tenth of a REST request's instructions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.convertors import PathConvertor
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, Router
from starlette.types import Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The path the routes match: the request's path without the app's root path, as Starlette's routes take it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


class _Collection:
    """One collection's routes: its root's, and the others by their number of slashes."""

    __slots__ = ("by_slashes", "root", "routes", "unmatched")

    def __init__(self, root: Route | None, routes: Sequence[Route]) -> None:
        self.root = root
        self.routes = list(routes)
        self.by_slashes: dict[int, list[Route]] = {}
        for route in routes:
            if any(isinstance(convertor, PathConvertor) for convertor in route.param_convertors.values()):
                raise ValueError(f"{route.path}: a collection's path parameters take one segment each")
            self.by_slashes.setdefault(route.path.count("/"), []).append(route)
        # What a Mount's router does with a path none of its routes serves: the redirect or the 404.
        self.unmatched = Router(routes=self.routes)


class CollectionRoutes(BaseRoute):
    """The routes of collections whose prefixes have the same number of segments, none a prefix of another
    (`/rest/v1/patients`, `/rest/v1/data-samples`...), given as (prefix, root route or None, the routes under the
    prefix, each with its full path), each collection's routes in the order they are tried."""

    def __init__(self, collections: Sequence[tuple[str, Route | None, Sequence[Route]]]) -> None:
        depths = {prefix.count("/") for prefix, _root, _routes in collections}
        if len(depths) != 1:
            raise ValueError("the prefixes of one CollectionRoutes have the same number of segments")
        (self._depth,) = depths
        self._by_prefix = {prefix: _Collection(root, routes) for prefix, root, routes in collections}

    @property
    def routes(self) -> list[Route]:
        """Every route served, roots first in each collection."""
        return [r for c in self._by_prefix.values() for r in ([c.root] if c.root is not None else []) + c.routes]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """As the collection's root route or Mount would match; the child scope names the route that serves the
        request (`route`), which `handle` runs."""
        if scope["type"] != "http":
            return Match.NONE, {}
        path = route_path(scope)
        slashes = path.count("/")
        depth = self._depth
        if slashes < depth:
            return Match.NONE, {}
        collection = self._by_prefix.get("/".join(path.split("/", depth + 1)[: depth + 1]))
        if collection is None:
            return Match.NONE, {}
        if slashes == depth:  # the prefix itself: its root route, or nothing (a Mount does not match it)
            if collection.root is None:
                return Match.NONE, {}
            match, child = collection.root.matches(scope)
            child["route"] = collection.root
            return match, child
        partial: dict[str, Any] | None = None
        for route in collection.by_slashes.get(slashes, ()):
            match, child = route.matches(scope)
            if match is Match.FULL:
                child["route"] = route
                return match, child
            if match is Match.PARTIAL and partial is None:
                partial = {**child, "route": route}
        # Under the prefix the request is the collection's, as it is a Mount's: a route that allows another
        # method answers 405, and no route the Mount router's redirect or 404.
        return Match.FULL, partial if partial is not None else {"route": collection.unmatched}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope["route"]
        if isinstance(route, Router):
            await route(scope, receive, send)
        else:
            await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefixes={list(self._by_prefix)!r})"
