#!/usr/bin/env python3
"""Set up and run Medstream from a fresh clone, with nothing but Python 3.11+.

    python3 dev.py run     # venv + install, then the server on SQLite with the demo driven through the SDK
    python3 dev.py test    # venv + install, then ruff, mypy --strict and the whole pytest suite

Extra arguments after the command go to `medstream demo` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".medstream-installed"


def _run(*args: str | Path) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    """Create .venv and install the package with the server and the dev tools when pyproject.toml changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the user has
        sys.exit(f"Medstream needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    print("installing medstream and its dev tools into .venv", flush=True)
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[server,dev]")
    STAMP.write_text(wanted)


def main() -> None:
    command, extra = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command not in {"run", "test"}:
        sys.exit(__doc__)
    ensure_environment()
    if command == "run":
        _run(BIN / "medstream", "demo", *extra)
        return
    linted = [path for path in ("src", "tests", "bench", "dev.py") if (ROOT / path).exists()]
    _run(BIN / "ruff", "check", *linted)
    _run(BIN / "ruff", "format", "--check", *linted)
    _run(BIN / "mypy", "src")
    _run(BIN / "python", "-m", "pytest", *extra)


if __name__ == "__main__":
    main()
