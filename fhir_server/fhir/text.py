"""String normalisation shared by extraction and the search-query parser.

FHIR string search is case- and accent-insensitive: both sides go through `normalize_string`, so the
index stores the normalised form and a query compares normalised prefixes.
"""

from __future__ import annotations

import unicodedata


def normalize_string(s: str) -> str:
    """Case-folded, accents stripped (NFKD minus combining marks), whitespace collapsed to one space."""
    if s.isascii():
        # Fast path: most stored strings are ASCII, for which NFKD is the identity.
        return " ".join(s.lower().split())
    decomposed = unicodedata.normalize("NFKD", s)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())
