"""The layers' import rules: the SDK needs none of the server's libraries, and the sans-I/O core (`model/`,
`filters/`, `events/`, `crypto/`) imports no I/O library at all.

The SDK is checked in a fresh interpreter (what `import medstream.sdk` really loads, third-party libraries'
own imports included: that is what an SDK-only install must be able to load). The core is checked by reading
its source with `ast`: it names the module and line of a forbidden import, sees imports a run would not execute
(inside functions, under `TYPE_CHECKING`), and follows the core's imports of other Medstream modules
(`access.py`, `errors.py`, ...), so that a forbidden library reached through one of them is found too.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

import medstream

PACKAGE = Path(medstream.__file__).parent
# argon2-cffi is not among them: the SDK's key store seals private keys under a passphrase with Argon2id.
SERVER_LIBRARIES = ("sqlalchemy", "starlette", "fastapi", "uvicorn", "alembic", "asyncpg", "jwt")
IO_LIBRARIES = ("asyncio", "sqlalchemy", "starlette", "fastapi", "uvicorn", "httpx", "websockets")
CORE = ("model", "filters", "events", "crypto", "icure")


def test_importing_the_sdk_loads_none_of_the_servers_libraries() -> None:
    probe = (
        "import sys, medstream.sdk\n"
        f"forbidden = {SERVER_LIBRARIES!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(forbidden)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import medstream.sdk loaded server libraries: {result.stdout.strip()}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def path_of(module: str) -> Path | None:
    """The source file of a Medstream module or package, None for anything else."""
    base = PACKAGE.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module, wherever it stands; `from package import name`
    gives the package and, when `name` is a module of it, that module too."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{a.name}") for a in node.names if path_of(f"{module}.{a.name}")]
    return found


def forbidden_imports(roots: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """Each forbidden import reachable from `roots` through Medstream's own modules, with the chain to it."""
    chains: dict[Path, str] = {root: module_name(root) for root in roots}
    todo = deque(roots)
    problems: list[str] = []
    while todo:
        path = todo.popleft()
        for line, imported in imports_of(path):
            if imported.split(".")[0] in forbidden:
                problems.append(f"{chains[path]} imports {imported} ({path.relative_to(PACKAGE.parent)}:{line})")
            parts = imported.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                found = path_of(".".join(parts[:depth])) if parts[0] == "medstream" else None
                if found is not None and found not in chains:
                    chains[found] = f"{chains[path]} -> {'.'.join(parts[:depth])}"
                    todo.append(found)
    return problems


def test_the_sans_io_core_imports_no_io_library() -> None:
    roots = sorted(path for layer in CORE for path in (PACKAGE / layer).rglob("*.py"))
    assert len(roots) > 20, "the core's modules are found"
    assert PACKAGE / "crypto" / "encrypted_self.py" in roots, "the crypto core is checked"
    problems = forbidden_imports(roots, IO_LIBRARIES)
    assert problems == [], "the sans-I/O core imports I/O libraries:\n" + "\n".join(problems)


def test_the_scan_follows_imports_through_other_medstream_modules() -> None:
    # The store compiles filters to SQL: reached from a core module, it would be caught, chain and all.
    problems = forbidden_imports([PACKAGE / "store" / "queries.py"], ("sqlalchemy",))
    assert any(p.startswith("medstream.store.queries imports sqlalchemy") for p in problems), problems
    assert any("medstream.store.queries -> medstream.store.filter_sql imports sqlalchemy" in p for p in problems)
    # And the core's own imports of access.py and errors.py are followed.
    reached = forbidden_imports([PACKAGE / "events" / "subscription.py"], ("dataclasses", "enum"))
    assert any("-> medstream.access imports dataclasses" in p for p in reached), reached


@pytest.mark.parametrize(
    "name", ["medstream.filters", "medstream.model", "medstream.errors", "medstream.sdk", "medstream.crypto"]
)
def test_each_public_package_exports_exactly_what_it_holds(name: str) -> None:
    package = importlib.import_module(name)
    exported = set(package.__all__)
    assert len(exported) == len(package.__all__), "no name twice"
    assert [n for n in package.__all__ if not hasattr(package, n)] == []
    own = {
        n
        for n, value in vars(package).items()
        if not n.startswith("_") and getattr(value, "__module__", "").startswith("medstream")
    }
    assert sorted(own - exported) == [], "public Medstream names the package holds but does not export"


def test_the_filters_package_no_longer_offers_the_sql_compiler() -> None:
    import medstream.filters

    assert not {"compile_filter", "FilterTables", "has_driving_constraint"} & set(dir(medstream.filters))
