"""Read the first sheet of an ``.xlsx`` workbook into a DataFrame (standard library only).

Two of the external cohorts (Sirio-Libanes, Tongji) are published as Excel workbooks. An
``.xlsx`` file is a zip of XML parts; the cohorts need only cell values of the first sheet
(shared strings, inline strings, numbers and booleans), so a small reader here avoids a new
run-time dependency (openpyxl) for two files. Formulas are read as their cached values;
dates stay Excel serial numbers (no cohort reader needs them as dates).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pandas as pd

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_CELL_REF = re.compile(r"^([A-Z]+)(\d+)$")


def read_first_sheet(path: Path) -> pd.DataFrame:
    """The first sheet as a DataFrame: row 1 is the header, empty cells are NaN.

    Raises ValueError for a file that is not an ``.xlsx`` workbook (or has no sheet), OSError
    for an unreadable file.
    """
    try:
        with zipfile.ZipFile(Path(path)) as archive:
            strings = _shared_strings(archive)
            rows = _sheet_rows(archive, _first_sheet_part(archive), strings)
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise ValueError(f"{path}: not a readable .xlsx workbook ({e})") from e
    if not rows:
        raise ValueError(f"{path}: the first sheet is empty")
    width = max(max(row) for row in rows.values() if row) + 1
    first = min(rows)
    header = [str(rows[first].get(c, f"column_{c}")) for c in range(width)]
    body = [[rows[r].get(c) for c in range(width)] for r in sorted(rows) if r != first]
    frame = pd.DataFrame(body, columns=header)
    for name in frame.columns:
        numbers = pd.to_numeric(frame[name], errors="coerce")
        if numbers.notna().sum() == frame[name].notna().sum():
            frame[name] = numbers
    return frame


def _first_sheet_part(archive: zipfile.ZipFile) -> str:
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    sheet = workbook.find("m:sheets/m:sheet", _NS)
    if sheet is None:
        raise KeyError("no sheet in xl/workbook.xml")
    rel_id = sheet.get(_REL_NS)
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for rel in rels:
        if rel.get("Id") == rel_id:
            target = str(rel.get("Target", ""))
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    raise KeyError(f"relationship {rel_id} of the first sheet")


def _shared_strings(archive: zipfile.ZipFile) -> list[str]:
    if "xl/sharedStrings.xml" not in archive.namelist():
        return []
    root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
    return ["".join(t.text or "" for t in item.iter(f"{{{_NS['m']}}}t")) for item in root]


def _sheet_rows(
    archive: zipfile.ZipFile, part: str, strings: list[str]
) -> dict[int, dict[int, object]]:
    rows: dict[int, dict[int, object]] = {}
    root = ElementTree.fromstring(archive.read(part))
    for cell in root.iterfind("m:sheetData/m:row/m:c", _NS):
        match = _CELL_REF.match(cell.get("r", ""))
        if match is None:
            continue
        value = _cell_value(cell, strings)
        if value is not None:
            rows.setdefault(int(match.group(2)), {})[_column_index(match.group(1))] = value
    return rows


def _cell_value(cell: ElementTree.Element, strings: list[str]) -> object:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{{{_NS['m']}}}t"))
    raw = cell.findtext("m:v", default=None, namespaces=_NS)
    if raw is None or raw == "":
        return None
    if kind == "s":
        return strings[int(raw)]
    if kind == "b":
        return raw == "1"
    if kind in ("str", "e"):
        return raw
    return float(raw)


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + (ord(letter) - ord("A") + 1)
    return index - 1
