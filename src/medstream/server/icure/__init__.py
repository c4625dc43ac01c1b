"""The iCure adapter's I/O: `/rest/v2` (routes.py) and `/ws/v2/notification/subscribe` (socket.py), thin layers
over Medstream's store and dispatcher around the sans-I/O `medstream.icure` (docs/icure.md)."""
