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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import PurePath

MAX_LINES = 10_000  # lines after the header
MAX_BYTES = 5 * 2**20  # the file as uploaded
MAX_ROWS = 100_000  # rows read, the empty ones included
MAX_COLUMNS = 256  # cells further right are ignored
MAX_UNPACKED = 32 * 2**20  # an XLSX's parts, unpacked (a 10 000-line sheet is a few MiB)
MAX_MEMBERS = 1_000  # an XLSX's parts
MAX_SHARED_STRINGS = 8 * 2**20  # its shared-strings table, unpacked (read whole, up front)
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


_COPY = re.compile(r"\s*(?:\(\d{1,3}\)|- copy(?: \(\d{1,3}\))?)\s*$", re.IGNORECASE)


def sheet_name_of(filename: str) -> str:
    """A sheet's default name: its file name without the extension, nor the `` (1)`` or
    `` - Copy`` a browser or Windows adds to a second download of the same file (so the
    same sheet uploaded again has the same line references)."""
    stem = PurePath(filename.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return _COPY.sub("", stem).strip() or stem


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


# A raw line: its number as a spreadsheet shows it, its non-empty cells by column index
# (0-based), and the columns whose cell held a formula.
RawLine = tuple[int, dict[int, str], set[int]]


def _too_many_lines() -> SheetError:
    return SheetError(
        "file",
        f"the sheet has more than {MAX_LINES:,} lines; the limit is {MAX_LINES:,} per sheet: "
        "split it into several sheets",
    )


def _too_many_rows() -> SheetError:
    return SheetError(
        "file",
        f"the sheet has more than {MAX_ROWS:,} rows counting the empty ones; a sheet may have "
        f"up to {MAX_LINES:,} lines: delete the empty rows or split it",
    )


def _bounded(raw: Iterator[RawLine]) -> list[RawLine]:
    """The non-empty lines of ``raw``, read no further than the limit: the header and
    :data:`MAX_LINES` lines (one more is refused), :data:`MAX_ROWS` rows in all."""
    out: list[RawLine] = []
    for seen, (number, cells, formulas) in enumerate(raw, 1):
        if seen > MAX_ROWS or number > MAX_ROWS:
            raise _too_many_rows()
        if not any(c.strip() for c in cells.values()):
            continue
        out.append((number, cells, formulas))
        if len(out) > MAX_LINES + 1:  # the header and MAX_LINES lines
            raise _too_many_lines()
    return out


def _csv_rows(content: bytes) -> Iterator[RawLine]:
    text = _decode(content)
    if "\x00" in text:
        raise SheetError("file", "the file is not a CSV or XLSX sheet")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for number, row in enumerate(reader, 1):
            yield number, {i: c for i, c in enumerate(row[:MAX_COLUMNS]) if c}, set()
    except csv.Error as exc:
        raise SheetError("file", f"the CSV cannot be read: {exc}") from None


def _check_archive(content: bytes) -> None:
    """Refuse a workbook that unpacks to more than :data:`MAX_UNPACKED` bytes before any of
    it is unpacked (the sizes its zip directory declares; Python's zipfile never inflates a
    member past its declared size)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError):
        raise SheetError("file", "the file is not a readable Excel workbook (.xlsx)") from None
    unpacked = sum(m.file_size for m in members)
    strings = sum(m.file_size for m in members if m.filename.lower().endswith("sharedstrings.xml"))
    if strings > MAX_SHARED_STRINGS:
        raise SheetError(
            "file",
            f"the workbook's table of texts unpacks to {strings / 2**20:,.0f} MiB, over the "
            f"limit of {MAX_SHARED_STRINGS // 2**20} MiB (a 10 000-line sheet needs a few): it "
            "is refused unread. Save the sheet as CSV, or copy its lines into a new workbook",
        )
    if len(members) > MAX_MEMBERS or unpacked > MAX_UNPACKED:
        raise SheetError(
            "file",
            f"the workbook unpacks to {unpacked / 2**20:,.0f} MiB in {len(members):,} parts, over "
            f"the limit of {MAX_UNPACKED // 2**20} MiB (and {MAX_MEMBERS:,} parts): a file that "
            "unpacks to far more than it weighs (a 'zip bomb') is refused unread. Save the "
            "sheet as CSV, or copy its lines into a new workbook",
        )


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_rows(content: bytes) -> Iterator[RawLine]:
    """The cells a workbook's first sheet holds, row by row as stored: its declared
    dimension is never read (a 30 KB file may declare A1:XFD1048576), and neither missing
    rows nor missing cells are made up."""
    import openpyxl
    from openpyxl.worksheet._reader import WorkSheetParser

    _check_archive(content)
    try:
        book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=False)
        sheet = book.worksheets[0]
        source = sheet._get_source()
    except Exception:
        raise SheetError("file", "the file is not a readable Excel workbook (.xlsx)") from None
    try:
        parser = WorkSheetParser(
            source,
            sheet._shared_strings,
            data_only=False,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        for number, row in parser.parse():
            cells: dict[int, str] = {}
            formulas: set[int] = set()
            for cell in row:
                i = int(cell["column"]) - 1
                if i >= MAX_COLUMNS:
                    continue
                value = cell["value"]
                if cell["data_type"] == "f" or (isinstance(value, str) and value.startswith("=")):
                    formulas.add(i)
                text = _cell_text(value)
                if text:
                    cells[i] = text
            yield int(number), cells, formulas
    except SheetError:
        raise
    except Exception:
        raise SheetError("file", "the file is not a readable Excel workbook (.xlsx)") from None
    finally:
        source.close()
        book.close()


def read(content: bytes) -> Sheet:
    """The sheet in ``content`` (CSV or XLSX, told apart by their bytes). Bounded before it
    is done: :data:`MAX_BYTES`, :data:`MAX_LINES` lines, an XLSX's unpacked size. CPU-bound:
    the service runs it in a worker thread."""
    if len(content) > MAX_BYTES:
        raise SheetError("file", f"the file is over the limit of {MAX_BYTES // 2**20} MiB")
    if not content.strip():
        raise SheetError("file", "the file is empty")
    is_xlsx = content[:4] == b"PK\x03\x04"
    numbered = _bounded(_xlsx_rows(content) if is_xlsx else _csv_rows(content))
    if not numbered:
        raise SheetError("file", "the sheet has no lines")
    _, header_cells, _ = numbered[0]
    width = max(header_cells) + 1
    header = [header_cells.get(i, "") for i in range(width)]
    by_index = match_header(header)
    lines = numbered[1:]
    if not lines:
        raise SheetError("file", "the sheet has a header but no lines")
    rows = []
    for number, cells, formula_at in lines:
        row = Row(number, dict.fromkeys(by_index.values(), ""))
        for i, name in by_index.items():
            row.cells[name] = cells.get(i, "").strip()
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
