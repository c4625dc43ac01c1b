"""End-to-end encryption costs in the SDK's process: per event, per write, per key.

    .venv/bin/python -m bench.crypto [--quick] [--runs N]

No server: each figure is the time of one operation of `medstream.crypto` in this process, the fastest of
blocks of repetitions (medians of --runs runs):
- an event's entity with its keys cached: orjson parse, AES-GCM decrypt of `encryptedSelf`, merge, pydantic
  validation of the DataSample, against the same DataSample in clear parsed and validated in one pass;
- an event of a new entity under exchange data already open (what a subscriber's stream of creations costs):
  the same plus its entity key unwrapped;
- the first event under new exchange data: the same plus the delegator's signature verified, K_ex and S_ac
  opened (two HPKE opens) and K_e unwrapped;
- encrypting a DataSample for a write (wire dict, encrypt, JSON), against its clear JSON;
- a data owner's key pair generated, exchange data created for two keys;
- Argon2id at the key store's default parameters (t=3, 64 MiB, p=4), once per key store unlock.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from bench.report import Report, Table, base_parser, cli, median
from medstream.crypto import (
    Argon2Parameters,
    DataOwnerKeyPair,
    EntityKey,
    create_exchange_data,
    decrypt_fields,
    encrypt_fields,
    open_exchange_data,
    unwrap_entity_key,
    wrap_entity_key,
)
from medstream.model import DataSample

NAME = "crypto"
ENCRYPTED_FIELDS = ["content", "comment", "qualifiedLinks", "canvasesIds", "transactionId"]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=None, help="seconds per measurement (default 1; quick 0.2)")
    return p


def sample() -> DataSample:
    """A typical measured observation: a value with its unit and codes, a comment, labels."""
    return DataSample.model_validate(
        {
            "id": "0b8f5c2e-2d7c-4e59-9d4f-2b1f3c9a7e11",
            "rev": "1-6f1c2a",
            "created": 1_765_000_000_000,
            "modified": 1_765_000_000_000,
            "author": "user-1",
            "responsible": "hcp-1",
            "patientId": "patient-1",
            "valueDate": 20261207063000,
            "labels": [{"type": "LOINC", "code": "8480-6", "version": "2.77"}],
            "codes": [{"type": "SNOMED", "code": "271649006"}],
            "content": {
                "en": {
                    "measureValue": {
                        "value": 128.0,
                        "unit": "mm[Hg]",
                        "unitCodes": [{"type": "UCUM", "code": "mm[Hg]"}],
                        "min": 90.0,
                        "max": 140.0,
                    }
                }
            },
            "comment": "Measured seated, left arm, after five minutes of rest.",
        }
    )


def per_call_us(operation: Callable[[], object], seconds: float) -> float:
    """Microseconds per call of `operation`: the fastest of blocks of about 20 ms repeated for `seconds` (as
    `timeit` advises: the slower blocks are the ones the rest of the machine interrupted)."""
    timer = timeit.Timer(operation)
    number, _ = timer.autorange()  # calls per block of at least 0.2 s
    number = max(1, number // 10)
    blocks = max(3, int(seconds / 0.02))
    return min(timer.repeat(repeat=blocks, number=number)) / number * 1e6


def measurements() -> dict[str, Callable[[], object]]:
    professional, patient = DataOwnerKeyPair.generate(1), DataOwnerKeyPair.generate(2)
    pins = {"hcp-1": {professional.id: professional.public}}
    exchange, secrets = create_exchange_data(
        "ed-1", "hcp-1", "patient-1", [professional], [professional.public, patient.public]
    )
    entity_key = EntityKey.generate()
    wrapped = wrap_entity_key(secrets.exchange_key, "DataSample", sample().id or "", entity_key)
    keys = {entity_key.kid: entity_key.key}
    model = sample()
    clear_event = model.to_json()
    encrypted_event = orjson.dumps(encrypt_fields(model.to_json_dict(), "DataSample", ENCRYPTED_FIELDS, entity_key))

    def decrypt_cached() -> object:
        return DataSample.model_validate(decrypt_fields(orjson.loads(encrypted_event), "DataSample", keys))

    def decrypt_new_entity() -> object:
        key = unwrap_entity_key(secrets.exchange_key, "DataSample", model.id or "", wrapped)
        return DataSample.model_validate(
            decrypt_fields(orjson.loads(encrypted_event), "DataSample", {key.kid: key.key})
        )

    def decrypt_first() -> object:
        opened = open_exchange_data(exchange, [patient], pins)
        key = unwrap_entity_key(opened.exchange_key, "DataSample", model.id or "", wrapped)
        return DataSample.model_validate(
            decrypt_fields(orjson.loads(encrypted_event), "DataSample", {key.kid: key.key})
        )

    def encrypt_write() -> object:
        return orjson.dumps(encrypt_fields(model.to_json_dict(), "DataSample", ENCRYPTED_FIELDS, entity_key))

    return {
        "event in clear: parse + validate": lambda: DataSample.model_validate_json(clear_event),
        "event encrypted, keys cached: parse + decrypt + merge + validate": decrypt_cached,
        "event of a new entity, exchange data open (+ unwrap its key)": decrypt_new_entity,
        "first event under new exchange data (+ verify + 2 HPKE opens + unwrap)": decrypt_first,
        "write in clear: JSON": model.to_json,
        "write encrypted: wire dict + encrypt + JSON": encrypt_write,
        "key pair generation (X25519 + Ed25519)": lambda: DataOwnerKeyPair.generate(0),
        "exchange data creation (2 keys: 4 HPKE wraps + 1 signature)": lambda: create_exchange_data(
            "ed-2", "hcp-1", "patient-1", [professional], [professional.public, patient.public]
        ),
    }


async def run(args: argparse.Namespace) -> Report:
    seconds = args.seconds or (0.2 if args.quick else 1.0)
    runs = args.runs or (1 if args.quick else 3)
    figures: dict[str, list[float]] = {}
    for _ in range(runs):
        for label, operation in measurements().items():
            figures.setdefault(label, []).append(per_call_us(operation, seconds))
    argon2: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        Argon2Parameters().derive("correct horse battery staple", bytes(16))
        argon2.append((time.perf_counter() - started) * 1e6)
    results: dict[str, Any] = {label: round(median(values) or 0.0, 2) for label, values in figures.items()}
    results["argon2id t=3 m=64MiB p=4 (one key store unlock)"] = round(median(argon2) or 0.0, 0)
    clear = results["event in clear: parse + validate"]
    rows: list[list[object]] = [
        [label, value, f"{value / clear:.2f}x" if label.startswith(("event", "first")) else None]
        for label, value in results.items()
    ]
    table = Table("crypto: CPU per operation (one core)", ["operation", "us", "vs clear event"], rows)
    table.notes.append(
        f"medians of {runs} run(s), each the fastest 20 ms block of {seconds:g} s (Argon2id: one derivation per run);"
        " one DataSample with a measure and a comment"
    )
    return Report({"microseconds": results}, [table])


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
