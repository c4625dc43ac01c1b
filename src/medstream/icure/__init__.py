"""iCure compatibility, sans I/O: iCure's JSON shapes, their mapping to and from Medstream's entities, iCure's
filters as Medstream filter nodes, and the messages of iCure's notification socket. The routes and the socket
that use them are in `medstream.server.icure` (docs/icure.md)."""
