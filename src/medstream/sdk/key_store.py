"""The key store file: a data owner's key store document on disk, readable by its user alone.

Default place: `$XDG_DATA_HOME/medstream/keys/<server host>/<data owner id>.json` (`~/.local/share` when
`XDG_DATA_HOME` is unset). A file is written to a temporary file of mode 0600 in the same directory and then
moved over the old one (`os.replace`), so that a crash leaves the old store or the new one, never half of one;
a file that its group or others may read or write is refused.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from medstream.crypto.key_store_format import Argon2Parameters, KeyStore, decode_key_store, encode_key_store

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
