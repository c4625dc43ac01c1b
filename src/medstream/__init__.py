"""Medstream: a medical-data platform with live entity events (server, SDK and CLI)."""

__version__ = "0.1.0"
