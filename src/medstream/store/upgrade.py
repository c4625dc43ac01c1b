"""The schema's migrations (Alembic, in `migrations/`), run to the newest on open."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def upgrade_to(connection: Connection, revision: str) -> None:
    """Run the migrations on `connection` up to `revision` ("head": the newest)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def upgrade_to_head(connection: Connection) -> None:
    upgrade_to(connection, "head")
