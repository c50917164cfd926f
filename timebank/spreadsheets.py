"""Text bound for spreadsheets (statement CSV, report CSV and XLSX) is defused: a cell a
spreadsheet would run as a formula — member names, descriptions, localities and organisation
names are typed by people — is written as text (OWASP "CSV injection")."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# xlsxwriter would otherwise turn "=..." into a formula and "https://..." into a link
XLSX_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False}


def safe_cell(value: Any) -> Any:
    """``value``, or text that starts like a formula behind a leading apostrophe (numbers
    are left alone: only text is typed by people)."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def slug_name(name: str) -> str:
    """A name as a file name may carry it: ASCII letters and digits, lower case, words
    joined by ``-`` ("Siân Llŷr" → ``sian-llyr``); what has no ASCII letter is dropped."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")
