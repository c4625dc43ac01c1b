"""A cardinal-sdk client as the scripts of this directory make it, with the encryption its configuration asks for.

`config["encryption"]` is `"server"` (the default): the fields the server requires encrypted, in iCure's names
(`icureEncryptedFields` of `GET /rest/v1/crypto/configuration`), are added to cardinal's default
`EncryptedFieldsConfiguration` (those it does not name already), as an application does on a server that
requires encryption (docs/icure.md);
or `"default"`: cardinal's default configuration, unchanged.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

from cardinal_sdk import CardinalSdk
from cardinal_sdk.authentication.AuthenticationMethod import UsernamePassword
from cardinal_sdk.options.SdkOptions import EncryptedFieldsConfiguration, SdkOptions
from cardinal_sdk.storage.StorageFacadeOptions import FileSystemStorage


def _adding(defaults: list[str], required: list[str]) -> list[str]:
    """`defaults` and each required field they do not name already (cardinal refuses a field named twice, as in
    `partnerships` beside its default `partnerships[].*`)."""
    named = {re.split(r"[.\[]", path, maxsplit=1)[0] for path in defaults}
    return [*defaults, *(name for name in required if name not in named)]


def server_options(url: str) -> SdkOptions:
    """Cardinal's default encrypted fields plus those the server at `url` requires encrypted."""
    with urllib.request.urlopen(f"{url}/rest/v1/crypto/configuration", timeout=30) as response:
        required: dict[str, list[str]] = json.load(response)["icureEncryptedFields"]
    fields = EncryptedFieldsConfiguration()
    return SdkOptions(
        encrypted_fields=EncryptedFieldsConfiguration(
            patient=_adding(fields.patient, required["Patient"]),
            contact=_adding(fields.contact, required["Contact"]),
            service=_adding(fields.service, required["Service"]),
            health_element=_adding(fields.health_element, required["HealthElement"]),
        )
    )


def connect(config: dict[str, Any]) -> CardinalSdk:
    options = server_options(config["url"]) if config.get("encryption", "server") == "server" else SdkOptions()
    return CardinalSdk(
        None,
        config["url"],
        UsernamePassword(config["login"], config["password"]),
        FileSystemStorage(config["storage"]),
        options,
    )


def run_script(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Run a client script: `run` on the JSON config of argv[1], its result printed as one JSON line, or what
    failed with its traceback, for the test to show."""
    config = json.loads(sys.argv[1])
    try:
        result = run(config)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print(json.dumps(result), flush=True)
