"""Text normalisation shared by the SQL compiler (stored search columns) and the in-memory matcher."""

from __future__ import annotations

import unicodedata


def normalize_for_search(text: str) -> str:
    """Accent- and case-insensitive form: 'Élodie  ÅSTRÖM' -> 'elodie astrom'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())
