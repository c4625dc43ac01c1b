"""Storage: SQL schema, migrations, repositories and the outbox (SQLAlchemy Core, aiosqlite and asyncpg)."""
