"""The small .xlsx reader: shared and inline strings, numbers, booleans, gaps, bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from triage.risk.xlsx import read_first_sheet

pytestmark = pytest.mark.unit

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _workbook(path: Path, cells: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="S" sheetId="1" r:id="rId7"/></sheets></workbook>',
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId7" Target="worksheets/data.xml"/></Relationships>',
        )
        archive.writestr(
            "xl/sharedStrings.xml",
            f'<sst xmlns="{_MAIN}"><si><t>age</t></si><si><t>name</t></si>'
            "<si><r><t>An</t></r><r><t>na</t></r></si></sst>",
        )
        archive.writestr(
            "xl/worksheets/data.xml",
            f'<worksheet xmlns="{_MAIN}"><sheetData>{cells}</sheetData></worksheet>',
        )
    return path


def test_reads_header_strings_numbers_and_gaps(tmp_path: Path) -> None:
    path = _workbook(
        tmp_path / "a.xlsx",
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
        '<c r="C1" t="inlineStr"><is><t>ok</t></is></c></row>'
        '<row r="2"><c r="A2"><v>73</v></c><c r="B2" t="s"><v>2</v></c>'
        '<c r="C2" t="b"><v>1</v></c></row>'
        '<row r="3"><c r="A3"><v>41.5</v></c><c r="C3" t="b"><v>0</v></c></row>',
    )
    frame = read_first_sheet(path)
    assert list(frame.columns) == ["age", "name", "ok"]
    assert frame["age"].tolist() == [73.0, 41.5]
    assert frame["name"].iloc[0] == "Anna" and frame["name"].isna().iloc[1]
    assert frame["ok"].tolist() == [True, False]


def test_a_file_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.xlsx"
    path.write_text("age,sex\n1,M\n")
    with pytest.raises(ValueError, match="not a readable .xlsx"):
        read_first_sheet(path)


def test_an_empty_sheet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        read_first_sheet(_workbook(tmp_path / "c.xlsx", ""))
