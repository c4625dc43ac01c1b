"""Event types, subscription index, protocol messages and resume logic: the sans-I/O event core."""
