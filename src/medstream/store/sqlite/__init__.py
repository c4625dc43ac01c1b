"""Everything of the store that is SQLite's own: its backend (`backend.SQLiteBackend`), its writer thread with
group commit, and its statements straight through the driver."""
