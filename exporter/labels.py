"""Cleaning of label values that come from a worker (owners, host names, versions, licence strings)."""

from __future__ import annotations

import unicodedata

# Long enough for any real host name, user name or version string; anything longer is cut, so a
# hostile controller cannot make one series arbitrarily large.
MAX_LABEL_LENGTH = 128
REPLACEMENT = "\ufffd"
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_label(value: str | None, fallback: str = "unknown") -> str:
    """Return ``value`` as valid, printable UTF-8 of at most MAX_LABEL_LENGTH characters."""
    if value is None or value == "":
        return fallback
    # Control characters, lone surrogates (from invalid Unicode escapes in JSON, which cannot be encoded)
    # and bidirectional overrides (which make a label display as something it is not) are replaced.
    text = "".join(
        REPLACEMENT if unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS else char
        for char in value
    )
    if len(text) > MAX_LABEL_LENGTH:
        text = text[: MAX_LABEL_LENGTH - 1] + "…"
    return text
