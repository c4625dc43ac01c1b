"""Storage: SQL schema, migrations, the entity repository and the outbox (SQLAlchemy Core), over one backend
per database: `sqlite` (the standard library's sqlite3) and `postgresql` (asyncpg)."""
