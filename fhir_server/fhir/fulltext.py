"""Text for `_text` (the narrative, tags stripped) and `_content` (every string in the resource).

The R4 search page leaves the matching to the server; this server uses a word index with prefix
matching (see storage/sqlite), so here the job is only to gather the words.
"""

from __future__ import annotations

import html
import re
from typing import Any

from fhir_server.fhir.index_values import FullTextValue

_TAG = re.compile(r"<[^>]+>")
# Keys whose string values are identifiers or machinery, not content a person would search for.
_SKIP = frozenset({"resourceType", "id", "meta", "reference", "system", "url", "div", "fullUrl"})


def narrative_text(resource: dict[str, Any]) -> str:
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str):
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", div)).split())


def _strings(node: Any, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _SKIP:
                continue
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, dict | list):
                _strings(value, out)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, dict | list):
                _strings(value, out)


def fulltext_values(resource: dict[str, Any]) -> list[FullTextValue]:
    narrative = narrative_text(resource)
    parts: list[str] = [narrative] if narrative else []
    _strings(resource, parts)
    out = [FullTextValue("_content", " ".join(parts))] if parts else []
    if narrative:
        out.append(FullTextValue("_text", narrative))
    return out
