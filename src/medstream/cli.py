"""`medstream`: the command line (also `python -m medstream`). Every command runs the server or its database, so
this module first checks that the server's packages are installed (`pip install medstream` alone is the SDK) and
says how to install them if not; the commands themselves are in `medstream.admin.cli`."""

from __future__ import annotations

import importlib.metadata
import re
import sys

SERVER_MISSING = "medstream: the server is not installed (missing: {}); install it: pip install 'medstream[server]'"


def missing_server_requirements() -> list[str]:
    """The distributions of the `server` extra that are not installed. Empty when medstream itself is not
    installed (run from a source tree)."""
    try:
        requirements = importlib.metadata.requires("medstream") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name is None or not re.search(r"""extra\s*==\s*["']server["']""", requirement):
            continue
        try:
            importlib.metadata.version(name.group())
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group())
    return missing


def main(argv: list[str] | None = None) -> None:
    missing = missing_server_requirements()
    if missing:
        sys.exit(SERVER_MISSING.format(", ".join(missing)))
    from medstream.admin.cli import run

    run(argv)
