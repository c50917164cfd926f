"""Names as people type them (see docs/names.md): one folding rule for every comparison of
names, the look-alike skeleton behind duplicate warnings, and the one check of the
characters a name or a free text may hold.

Pure functions, no database: the base of searching (``name_folded`` and the word index,
:mod:`timebank.namesearch`), matching (the sheet resolver, the console's record-by-name) and
validating (request bodies and console forms alike)."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable

# Invisible characters that change how text reads or compares but show nothing themselves.
ZERO_WIDTH = {
    "\u200b": "zero-width space",
    "\u200c": "zero-width non-joiner",
    "\u200d": "zero-width joiner",
    "\u2060": "word joiner",
    "\ufeff": "zero-width no-break space",
    "\u180e": "Mongolian vowel separator",
    "\u00ad": "soft hyphen",
}
BIDI = {
    "\u202a": "left-to-right embedding",
    "\u202b": "right-to-left embedding",
    "\u202c": "pop directional formatting",
    "\u202d": "left-to-right override",
    "\u202e": "right-to-left override",
    "\u2066": "left-to-right isolate",
    "\u2067": "right-to-left isolate",
    "\u2068": "first strong isolate",
    "\u2069": "pop directional isolate",
    "\u200e": "left-to-right mark",
    "\u200f": "right-to-left mark",
    "\u061c": "Arabic letter mark",
}
# The stored folded form and skeleton are cut to this many characters (NFKC may lengthen a
# name: one ligature can become several letters).
FOLDED_LENGTH = 400
# Line breaks a free text (a description, a reason) may hold; a name holds none.
TEXT_LAYOUT = "\t\n\r"


_DROPPED = {"Cf", "Cc"}  # format (zero-width, bidi) and control characters, but not spaces


def fold(text: str) -> str:
    """A name as compared: Unicode compatibility form (NFKC: full-width letters and
    non-breaking spaces become ordinary ones), case-folded, diacritics removed (NFKD minus
    combining marks: "Siân Llŷr" → "sian llyr"), invisible format and control characters
    dropped, whitespace collapsed to single spaces and trimmed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(
        c
        for c in unicodedata.normalize("NFKD", text)
        if (not unicodedata.combining(c) and unicodedata.category(c) not in _DROPPED) or c.isspace()
    )
    return " ".join(unicodedata.normalize("NFC", text).split())


def words(text: str) -> list[str]:
    """The folded words of a name, each once, in order (what a search prefix may match)."""
    return list(dict.fromkeys(fold(text).split()))


# Letters of other scripts that look like a Latin letter (after folding: lower case, no
# marks), and Latin letters that look like another. Enough for the look-alikes people meet
# in names — Cyrillic and Greek letters typed or pasted into a Latin name, digits for
# letters — not Unicode's whole confusables table.
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i",
    "ї": "i", "ј": "j", "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p",
    "ԛ": "q", "г": "r", "ѕ": "s", "т": "t", "у": "y", "ү": "y", "х": "x", "ԝ": "w",
    "ѡ": "w", "ь": "b", "з": "3", "ч": "4", "п": "n", "и": "u", "л": "n", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "η": "n", "ι": "i", "κ": "k",
    "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w", "ϲ": "c", "ϳ": "j", "μ": "u",
    # Latin look-alikes of Latin letters and digits
    "ı": "i", "ȷ": "j", "ɩ": "i", "ʟ": "l", "ɑ": "a", "0": "o", "1": "l", "|": "l",
    "5": "s", "ſ": "s",
}  # fmt: skip
_SKELETON = str.maketrans(_LOOKALIKES)


def skeleton(text: str) -> str:
    """What a name looks like: its folded form with every look-alike letter replaced by the
    Latin letter it passes for, and "rn" read as "m" ("Homo Glyрh" with a Cyrillic р and
    "Homo Glyph" have one skeleton). For warnings only, never for finding someone."""
    return fold(text).translate(_SKELETON).replace("rn", "m").replace("vv", "w")


def find_bad_character(text: str, *, name: bool) -> tuple[int, str, str] | None:
    """The first character ``text`` may not hold — (position from 1, "U+202E", what it is) —
    or None: a control character (a name may not hold a tab or a line break either; a free
    text may), a bidirectional override, embedding, isolate or mark, a zero-width character,
    NUL, a lone surrogate, a line or paragraph separator."""
    for i, c in enumerate(text, start=1):
        if c in TEXT_LAYOUT and not name:
            continue
        what = ZERO_WIDTH.get(c) or BIDI.get(c)
        category = unicodedata.category(c)
        if what is None:
            if c == "\0":
                what = "NUL character"
            elif category == "Cc":
                what = "control character"
            elif category in ("Cf", "Cs", "Zl", "Zp"):
                what = "invisible formatting character"
            else:
                continue
        return i, f"U+{ord(c):04X}", what
    return None


def bad_character(text: str, *, name: bool) -> str | None:
    """Why ``text`` may not be stored, in words naming the character and where it is."""
    found = find_bad_character(text, name=name)
    if found is None:
        return None
    position, code, what = found
    return f"must not contain a {what} ({code}, character {position})"


def mask_email(email: str | None) -> str | None:
    """ "sian.llyr@example.org" → "s•••@example.org": enough to tell two people apart on a
    list of choices, not enough to read someone's address off it."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


def suggest(text: str, names: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The folded ``names`` closest to what was typed, best first: the people a misspelt name
    ("Bethan Morgn") could mean. One ranking for the sheet importer and the console."""
    return difflib.get_close_matches(fold(text), list(names), n=n, cutoff=cutoff)
