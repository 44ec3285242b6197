"""Term sources from accessions, free of arctrl so both engines (and fast workers) can import it."""

from __future__ import annotations

import re

#: The local id part of an accession: ``PREFIX_digits`` (OBO PURL) or ``PREFIX:id`` (CURIE).
_ACCESSION_TAIL = re.compile(r"([A-Za-z][A-Za-z0-9]*)[_:][A-Za-z0-9]+")


def term_source(uri: str | None) -> str | None:
    """The ontology prefix an accession belongs to, or ``None`` if it does not say."""
    if not uri:
        return None
    tail = re.split(r"[/#]", uri.strip().rstrip("/"))[-1]
    match = _ACCESSION_TAIL.fullmatch(tail)
    return match.group(1) if match else None
