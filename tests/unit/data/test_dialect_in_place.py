"""A text file that already is its normalised copy is read in place.

:func:`ml.data.dialect.prepare_csv` writes no copy for uncompressed UTF-8 with LF
line endings and a one-character delimiter; anything else still gets the copy,
and a file whose bytes stop being UTF-8 far past the first chunk still fails
with the copy's message.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ml.data import dialect
from ml.data.dialect import DialectError, prepare_csv

HEADER = "customer,date,amount\n"
ROW = "C1,2024-03-01 10:00:00,12.50\n"


def _prepared(path: Path, tmp_path: Path, **options: str) -> tuple[Path, Path]:
    target = tmp_path / "copy.csv"
    _, read = prepare_csv(path, target, **options)
    return read, target


@pytest.mark.parametrize("encoding", ["utf-8", "UTF8", "utf_8"])
def test_a_utf8_lf_file_is_read_in_place(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text(HEADER + ROW * 10 + "C2,2024-03-02,7 €\n", encoding="utf-8")
    read, target = _prepared(path, tmp_path, encoding=encoding)
    assert read == path
    assert not target.exists()


@pytest.mark.parametrize(
    ("body", "options"),
    [
        ((HEADER + ROW).replace("\n", "\r\n"), {}),  # CRLF
        (HEADER + ROW * 3 + "C2,2024-03-02,7\r", {}),  # one CR at the end
        ("\ufeff" + HEADER + ROW, {}),  # a byte order mark
        ("customer date amount\nC1 2024-03-01 12.5\n", {"delimiter": "whitespace"}),
    ],
)
def test_anything_else_is_copied_normalised(
    tmp_path: Path, body: str, options: dict[str, str]
) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(body.encode("utf-8"))
    read, target = _prepared(path, tmp_path, **options)
    assert read == target
    copied = target.read_bytes()
    assert b"\r" not in copied and not copied.startswith(b"\xef\xbb\xbf")


def test_a_latin1_file_and_a_gzip_file_are_copied(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + "Zoë,2024-03-01,1\n").encode("latin-1"))
    read, target = _prepared(latin, tmp_path, encoding="latin-1")
    assert read == target
    assert "Zoë" in target.read_text(encoding="utf-8")

    packed = tmp_path / "log.csv.gz"
    packed.write_bytes(gzip.compress((HEADER + ROW).encode()))
    read, target = _prepared(packed, tmp_path)
    assert read == target
    assert target.read_text(encoding="utf-8") == HEADER + ROW


def test_multibyte_characters_across_check_blocks_stay_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialect, "CHECK_BYTES", 7)  # splits every "€" somewhere
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "C€,2024-03-01,1\n" * 50, encoding="utf-8")
    read, _ = _prepared(path, tmp_path)
    assert read == path


def test_bad_utf8_past_the_first_chunk_still_fails_with_a_hint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.csv"
    body = (HEADER + ROW * (2 * dialect.CHUNK_CHARS // len(ROW))).encode()
    path.write_bytes(body + b"C9,2024-03-05,3 \xe9\n")
    with pytest.raises(DialectError, match="not valid utf-8.*--encoding latin-1"):
        _prepared(path, tmp_path)
