"""Cleaning of label values that come from a worker (owners, host names, versions, licence strings)."""

from __future__ import annotations

import unicodedata

# Long enough for any real host name, user name or version string; anything longer is cut, so a
# hostile controller cannot make one series arbitrarily large.
MAX_LABEL_LENGTH = 128
REPLACEMENT = "\ufffd"


def clean_label(value: str | None, fallback: str = "unknown") -> str:
    """Return ``value`` as valid, printable UTF-8 of at most MAX_LABEL_LENGTH characters."""
    if value is None or value == "":
        return fallback
    # Lone surrogates (from invalid Unicode escapes in JSON) cannot be encoded; replace them.
    text = value.encode("utf-8", "replace").decode("utf-8")
    text = "".join(REPLACEMENT if unicodedata.category(char) in ("Cc", "Cs") else char for char in text)
    if len(text) > MAX_LABEL_LENGTH:
        text = text[: MAX_LABEL_LENGTH - 1] + "…"
    return text
