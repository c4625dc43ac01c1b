"""Everything of the store that is PostgreSQL's own: its backend (`backend.PostgreSQLBackend`), its connections,
merging of writes, one-statement creates and inserts, the locks its writers take, and its event numbering."""
