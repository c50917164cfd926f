"""Reports as JSON, tidy CSV (one row per figure) and XLSX.

JSON: scalar figures top-level, breakdowns in ``rows``; a withheld figure is ``null``,
named in the top-level ``suppressed`` list (scalars) or flagged by the row's ``suppressed``.
CSV: one row per figure with the period (``period_from``, its first day;
``period_to_exclusive``, the day after it — the JSON's ``period.to``; ``period_last_day``,
its last day — the JSON's ``period.last_day``), ``definitions_version``, ``perturbed`` and
``method`` (published figures) and a ``suppressed`` column. XLSX: a "Report" sheet (what, when, totals), a "Rows" sheet (one line per row,
withheld cells blank and shaded) and a "Tidy" sheet identical to the CSV.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import xlsxwriter

from timebank.reports.disclosure import Cell
from timebank.reports.service import Built, Item, Share
from timebank.spreadsheets import XLSX_OPTIONS, safe_cell

META_COLUMNS = [
    "report",
    "timebanks",
    "period_from",
    "period_to_exclusive",
    "period_last_day",
    "as_of",
    "definitions_version",
    "suppression_threshold",
    "perturbed",
    "method",
]
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUPPRESSION_NOTE = (
    "Exact figures. Figures over fewer people than the suppression threshold are withheld "
    "(blank, suppressed = true), as are further figures from which a withheld one could be "
    "worked out."
)
PUBLISHED_NOTE = (
    "Published figures (cell-key method): every count and hours figure is slightly perturbed, "
    "the same way every time it is asked for, so no small figure shows its true value and rows "
    "need not add up to totals. Rows whose population is under the suppression threshold are "
    "withheld (blank, suppressed = true). See docs/reports.md."
)


def figures(item: Item) -> list[tuple[str, Any, bool]]:
    """(name, value, suppressed) for each published figure of ``item``."""
    if isinstance(item, Share):
        n, dd = item.num, item.den
        withheld = n.suppressed or dd.suppressed
        value = None
        if not withheld and n.available and dd.available:
            num, den = n.figures[item.num_figure], dd.figures[item.den_figure]
            value = round(num / den, 4) if den else None
        return [(item.name, value, withheld)]
    cell: Cell = item
    if not cell.published:
        return []
    shown = cell.available and not cell.suppressed
    return [(k, v if shown else None, cell.suppressed) for k, v in cell.figures.items()]


def as_json(meta: dict[str, Any], built: Built) -> dict[str, Any]:
    body: dict[str, Any] = {**meta, **built.params}
    suppressed: list[str] = []
    for item in built.scalars:
        for name, value, withheld in figures(item):
            body[name] = value
            if withheld:
                suppressed.append(name)
    body["suppressed"] = suppressed
    rows = []
    for key, items in built.rows:
        row: dict[str, Any] = dict(key)
        any_withheld = False
        for item in items:
            for name, value, withheld in figures(item):
                row[name] = value
                any_withheld = any_withheld or withheld
        row["suppressed"] = any_withheld
        rows.append(row)
    body["rows"] = rows
    return body


def _meta_values(meta: dict[str, Any]) -> list[Any]:
    return [
        meta["report"],
        ";".join(meta["timebanks"]),
        meta["period"]["from"],
        meta["period"]["to"],
        meta["period"]["last_day"],
        meta["as_of"],
        meta["definitions_version"],
        meta["suppression_threshold"],
        meta["perturbed"],
        meta["method"] or "",
    ]


def tidy(meta: dict[str, Any], built: Built) -> list[list[Any]]:
    """Header and one line per figure: parameters and scalars first, then the rows."""
    head = _meta_values(meta)
    blank = [""] * len(built.keys)
    out: list[list[Any]] = [[*META_COLUMNS, *built.keys, "figure", "value", "suppressed"]]
    for name, value in built.params.items():
        out.append([*head, *blank, name, value, False])
    for item in built.scalars:
        for name, value, withheld in figures(item):
            out.append([*head, *blank, name, value, withheld])
    for key, items in built.rows:
        keys = [key[k] for k in built.keys]
        for item in items:
            for name, value, withheld in figures(item):
                out.append([*head, *keys, name, value, withheld])
    return out


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def as_csv(meta: dict[str, Any], built: Built) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    for line in tidy(meta, built):
        writer.writerow([safe_cell(_csv_value(v)) for v in line])
    return buf.getvalue()


def as_xlsx(meta: dict[str, Any], built: Built) -> bytes:
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(
        buf, {"in_memory": True, "strings_to_numbers": False, **XLSX_OPTIONS}
    )
    bold = book.add_format({"bold": True})
    withheld_fmt = book.add_format({"bg_color": "#D9D9D9"})

    sheet = book.add_worksheet("Report")
    lines: list[tuple[str, Any]] = [
        ("report", meta["report"]),
        ("timebanks", ", ".join(meta["timebanks"])),
        ("period_from", meta["period"]["from"]),
        ("period_to_exclusive", meta["period"]["to"]),
        ("period_last_day", meta["period"]["last_day"]),
        ("as_of", meta["as_of"]),
        ("generated_at", meta["generated_at"]),
        ("definitions_version", meta["definitions_version"]),
        ("suppression_threshold", meta["suppression_threshold"]),
        ("perturbed", meta["perturbed"]),
        ("method", meta["method"] or ""),
        ("note", PUBLISHED_NOTE if meta["perturbed"] else SUPPRESSION_NOTE),
        *built.params.items(),
    ]
    for r, (label, value) in enumerate(lines):
        sheet.write(r, 0, label, bold)
        sheet.write(r, 1, value)
    r = len(lines) + 1
    sheet.write_row(r, 0, ["figure", "value", "suppressed"], bold)
    for item in built.scalars:
        for name, value, withheld in figures(item):
            r += 1
            sheet.write(r, 0, name)
            if withheld:
                sheet.write_blank(r, 1, None, withheld_fmt)
            else:
                sheet.write(r, 1, value)
            sheet.write_boolean(r, 2, withheld)
    sheet.set_column(0, 0, 40)
    sheet.set_column(1, 1, 30)

    if built.rows:
        grid = book.add_worksheet("Rows")
        names: list[str] = []
        for _, items in built.rows:
            for item in items:
                for name, _, _ in figures(item):
                    if name not in names:
                        names.append(name)
        grid.write_row(0, 0, [*built.keys, *names, "suppressed"], bold)
        for i, (key, items) in enumerate(built.rows, start=1):
            grid.write_row(i, 0, [key[k] for k in built.keys])
            any_withheld = False
            for item in items:
                for name, value, withheld in figures(item):
                    col = len(built.keys) + names.index(name)
                    if withheld:
                        grid.write_blank(i, col, None, withheld_fmt)
                    else:
                        grid.write(i, col, value)
                    any_withheld = any_withheld or withheld
            grid.write_boolean(i, len(built.keys) + len(names), any_withheld)
        grid.freeze_panes(1, len(built.keys))
        grid.set_column(0, len(built.keys) - 1, 18)

    table = book.add_worksheet("Tidy")
    for i, line in enumerate(tidy(meta, built)):
        for j, value in enumerate(line):
            if value is None:
                continue
            table.write(i, j, value)
    book.close()
    return buf.getvalue()
