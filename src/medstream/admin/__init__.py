"""The operator's commands beside `serve` and `demo`: users, backup and check, and the start-up checks that turn
a bad configuration into one line and an exit code of its own (`exits`)."""
