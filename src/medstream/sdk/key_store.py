"""The key store file: a data owner's key store document on disk, readable by its user alone.

Default place: `$XDG_DATA_HOME/medstream/keys/<server host>/<data owner id>.json` (`~/.local/share` when
`XDG_DATA_HOME` is unset). A file is written to a temporary file of mode 0600 in the same directory and then
moved over the old one (`os.replace`), so that a crash leaves the old store or the new one, never half of one;
a file that its group or others may read or write is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from medstream.crypto.key_store_format import Argon2Parameters, KeyStore, decode_key_store, encode_key_store
from medstream.errors import UnavailableError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def default_key_store_path(server_url: str, data_owner_id: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where the key store of `data_owner_id` on the server at `server_url` is kept by default."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(server_url if "//" in server_url else f"//{server_url}")
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}_{parts.port}"
    for what, name in (("server host", host), ("data owner id", data_owner_id)):
        if not _SAFE_NAME.match(name):
            raise ValueError(f"{what} {name!r} cannot name a key store file")
    base = Path(environ.get("XDG_DATA_HOME") or Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return base / "medstream" / "keys" / host / f"{data_owner_id}.json"


def load_key_store(path: Path, passphrase: str | None = None) -> KeyStore:
    """The key store in `path`; PermissionError when the file's group or others may read or write it."""
    with open(path, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(
                f"key store {path} is open to its group or others (mode {stat.S_IMODE(mode):04o}): "
                f"it holds private keys; make it 0600 (chmod 600) after checking who could have read it"
            )
        data = file.read()
    return decode_key_store(data, passphrase)


def save_key_store(
    path: Path, store: KeyStore, passphrase: str | None = None, *, parameters: Argon2Parameters | None = None
) -> None:
    """Write `store` to `path` atomically, mode 0600; missing directories are made with mode 0700."""
    data = encode_key_store(store, passphrase, parameters=parameters)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


KEY_STORE_LOCK_SECONDS = 60.0  # how long a login waits for another process that holds the key store's lock
_LOCK_POLL_SECONDS = 0.05


@contextlib.asynccontextmanager
async def key_store_lock(path: Path, within: float = KEY_STORE_LOCK_SECONDS) -> AsyncIterator[None]:
    """Hold the key store at `path` for this process while a login opens it and publishes its keys: an exclusive
    `flock` on `.<name>.lock` beside it. Processes of one data owner that log in at once on one machine (the
    workers of one app) then open it one after the other, the later ones finding the key pair the first one made
    and published, where each would otherwise make its own, save it over the others' (the last save wins) and
    publish it (all but one refused), and the key published would be lost with the save it lost to. Taken without
    blocking, retried every 50 ms, so that a cancelled login leaves no thread waiting for it;
    UnavailableError after `within` seconds."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + within
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UnavailableError(
                        f"the key store {path} is held by another process of this data owner for over {within:g} s "
                        "(a login that does not end): stop it, or open the key store from this one later"
                    ) from None
                await asyncio.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # releases the lock
