"""Reading a paper time sheet typed into a spreadsheet: CSV (UTF-8, with or without a BOM;
comma or semicolon) or XLSX, its header matched forgivingly, its hours and dates read as
people write them. Pure: no database, no HTTP (SPEC §3.10, §7.7).

Columns (any order; header names ignoring case, spaces, ``_`` and ``-``):

=============  ==========================================================================
date           ``date``, ``day``, ``when``, ``occurred on``
provider       ``provider``, ``giver``, ``given by``, ``from``, ``volunteer``, ``helper``
recipient      ``recipient``, ``receiver``, ``received by``, ``to``, ``helped``, ``client``
hours          ``hours``, ``hrs``, ``time``, ``duration`` — ``1.5``, ``1:30``, ``90m``, ``2h``
minutes        ``minutes``, ``mins`` — whole minutes (instead of hours)
category       ``category``, ``type``, ``service``
description    ``description``, ``notes``, ``details``, ``what``
reference      ``reference``, ``ref``, ``line ref`` — the sheet's own line reference
=============  ==========================================================================
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

MAX_LINES = 10_000
MAX_BYTES = 5 * 2**20
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "day", "when", "occurredon", "dateofexchange"),
    "provider": ("provider", "giver", "givenby", "from", "volunteer", "helper", "gavetime"),
    "recipient": ("recipient", "receiver", "receivedby", "to", "helped", "client"),
    "hours": ("hours", "hrs", "time", "duration", "hoursgiven"),
    "minutes": ("minutes", "mins"),
    "category": ("category", "type", "service", "kind"),
    "description": ("description", "notes", "details", "what", "comment", "comments"),
    "reference": ("reference", "ref", "lineref", "sheetref", "linereference"),
}
REQUIRED = ("date", "provider", "recipient")


class SheetError(ValueError):
    """The file as a whole cannot be read; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Row:
    """One line of the sheet: its number as a spreadsheet shows it (the header is line 1)
    and its cells by column. ``formulas``: columns whose cell held a formula (never run)."""

    number: int
    cells: dict[str, str]
    formulas: list[str] = field(default_factory=list)


@dataclass
class Sheet:
    columns: dict[str, str]  # our column → the header as written
    rows: list[Row]


def normalise(text: str) -> str:
    """A name or header as compared (SPEC §7.7): Unicode compatibility form (NFKC),
    case-folded, surrounding and repeated spaces dropped — for sheets and the console."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _header_key(text: str) -> str:
    return re.sub(r"[\s_\-./()]+", "", normalise(text))


def match_header(header: list[str]) -> dict[int, str]:
    """Column index → our column, for the headers we know; refuses a sheet without the
    required columns or with one column given twice."""
    by_alias = {alias: name for name, aliases in COLUMNS.items() for alias in aliases}
    found: dict[int, str] = {}
    for i, text in enumerate(header):
        name = by_alias.get(_header_key(text))
        if name is None:
            continue
        if name in found.values():
            raise SheetError("header", f"two columns are both '{name}' (one is '{text}')")
        found[i] = name
    missing = [c for c in REQUIRED if c not in found.values()]
    if "hours" not in found.values() and "minutes" not in found.values():
        missing.append("hours (or minutes)")
    if missing:
        raise SheetError(
            "header",
            "the first line must name the columns; missing: "
            + ", ".join(missing)
            + f" (found: {', '.join(h for h in header if h.strip()) or 'nothing'})",
        )
    return found


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SheetError(
            "file",
            "the file is not UTF-8 text: save it as 'CSV UTF-8 (comma delimited)' or as an "
            "Excel workbook (.xlsx)",
        ) from None


def _csv_rows(content: bytes) -> list[tuple[list[str], list[int]]]:
    text = _decode(content)
    if "\x00" in text:
        raise SheetError("file", "the file is not a CSV or XLSX sheet")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [(row, []) for row in reader]
    except csv.Error as exc:
        raise SheetError("file", f"the CSV cannot be read: {exc}") from None


def _xlsx_rows(content: bytes) -> list[tuple[list[str], list[int]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=False)
    except Exception:
        raise SheetError("file", "the file is not a readable Excel workbook (.xlsx)") from None
    sheet = book.worksheets[0]
    out = []
    for row in sheet.iter_rows():
        cells, formulas = [], []
        for i, cell in enumerate(row):
            value = cell.value
            if cell.data_type == "f" or (isinstance(value, str) and value.startswith("=")):
                formulas.append(i)
                cells.append(str(value))
            elif value is None:
                cells.append("")
            elif isinstance(value, date):
                cells.append(value.strftime("%Y-%m-%d"))
            elif isinstance(value, float) and value.is_integer():
                cells.append(str(int(value)))
            else:
                cells.append(str(value))
        out.append((cells, formulas))
    book.close()
    return out


def read(content: bytes) -> Sheet:
    """The sheet in ``content`` (CSV or XLSX, told apart by their bytes)."""
    if len(content) > MAX_BYTES:
        raise SheetError("file", f"the file is over the limit of {MAX_BYTES // 2**20} MiB")
    if not content.strip():
        raise SheetError("file", "the file is empty")
    is_xlsx = content[:4] == b"PK\x03\x04" and zipfile.is_zipfile(io.BytesIO(content))
    raw = _xlsx_rows(content) if is_xlsx else _csv_rows(content)
    numbered = [
        (n, cells, f) for n, (cells, f) in enumerate(raw, 1) if any(c.strip() for c in cells)
    ]
    if not numbered:
        raise SheetError("file", "the sheet has no lines")
    _, header, _ = numbered[0]
    by_index = match_header(header)
    lines = numbered[1:]
    if len(lines) > MAX_LINES:
        raise SheetError(
            "file", f"the sheet has {len(lines):,} lines; the limit is {MAX_LINES:,} per sheet"
        )
    if not lines:
        raise SheetError("file", "the sheet has a header but no lines")
    rows = []
    for number, cells, formula_at in lines:
        row = Row(number, dict.fromkeys(by_index.values(), ""))
        for i, name in by_index.items():
            row.cells[name] = cells[i].strip() if i < len(cells) else ""
            if i in formula_at:
                row.formulas.append(name)
        rows.append(row)
    return Sheet({name: header[i] for i, name in by_index.items()}, rows)


_HOURS_MINUTES = re.compile(r"^(\d+)\s*:\s*([0-5]\d)$")
_UNITS = re.compile(
    r"^(?:(\d+(?:[.,]\d+)?)\s*h(?:rs?|ours?)?)?\s*(?:(\d+)\s*(?:m|mins?|minutes?)?)?$"
)


def minutes_of(hours: str, minutes: str = "") -> int:
    """Whole minutes from ``1.5``, ``1,5``, ``1:30``, ``90m``, ``2h``, ``1h 30m`` (hours
    column) or ``90`` (minutes column). Raises ValueError with a message for a person."""
    if minutes.strip() and not hours.strip():
        text = minutes.strip()
        if not text.isdigit():
            raise ValueError(f"minutes '{text}' is not a whole number of minutes")
        return int(text)
    text = hours.strip().lower()
    if not text:
        raise ValueError("no hours given")
    matched = _HOURS_MINUTES.match(text)
    if matched:
        return int(matched.group(1)) * 60 + int(matched.group(2))
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        units = _UNITS.match(text)
        if not units or not any(units.groups()):
            raise ValueError(
                f"hours '{hours.strip()}' is not understood: write 1.5, 1:30 or 90m"
            ) from None
        h = Decimal(units.group(1).replace(",", ".")) if units.group(1) else Decimal(0)
        return int(h * 60) + int(units.group(2) or 0)
    total = value * 60
    if total != total.to_integral_value():
        raise ValueError(f"hours '{hours.strip()}' is not a whole number of minutes")
    return int(total)


_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_UK = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def date_of(text: str) -> date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY`` (UK); nothing else (SPEC §7.7)."""
    text = text.strip()
    for pattern, order in ((_ISO, (0, 1, 2)), (_UK, (2, 1, 0))):
        matched = pattern.match(text)
        if matched:
            parts = [int(p) for p in matched.groups()]
            try:
                return date(parts[order[0]], parts[order[1]], parts[order[2]])
            except ValueError:
                raise ValueError(f"date '{text}' does not exist") from None
    raise ValueError(f"date '{text}' is not a date: write 2026-11-28 or 28/11/2026")
