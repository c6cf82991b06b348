"""Read a text export as it comes: its encoding, line endings and delimiter.

Real exports differ from one shop to the next: a UTF-8 byte order mark, a Latin-1
file, a header written with LF over rows ending in CRLF, ``;`` instead of ``,``, or a
fixed-width-looking log whose columns are separated by runs of spaces (the classic
CDNOW log). DuckDB's CSV sniffer gives up on some of these (mixed line endings), so
:func:`prepare_csv` makes one normalised copy of the file first: decoded with the
given encoding (a byte order mark is honoured and dropped), every line ending turned
into LF, and, for ``whitespace``, each line's runs of spaces and tabs turned into one
tab. The delimiter is detected from the first lines unless it is given. The copy is
what DuckDB reads, with the delimiter fixed, so nothing is left to its sniffer; a
file that already is UTF-8 with LF line endings is read as it is, without a copy.

Everything that makes a file unreadable raises :class:`DialectError` with one short
message: which file, what was detected, and which option to try.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

WHITESPACE = "whitespace"
# Delimiters tried by detection, in order of preference on a tie.
CANDIDATES = (",", ";", "\t", "|")
# Names accepted by --delimiter besides the character itself.
DELIMITER_NAMES = {
    "comma": ",",
    "semicolon": ";",
    "tab": "\t",
    "\\t": "\t",
    "pipe": "|",
    "space": WHITESPACE,
    "spaces": WHITESPACE,
    WHITESPACE: WHITESPACE,
}
SAMPLE_LINES = 200
CHUNK_CHARS = 1 << 20
CHECK_BYTES = 1 << 24
_WHITESPACE_RUN = re.compile(r"[ \t]+")


class DialectError(ValueError):
    """A text file cannot be read as asked (encoding, delimiter, compression)."""


@dataclass(frozen=True)
class Dialect:
    """How a text file was read."""

    delimiter: str  # one character, or WHITESPACE
    encoding: str
    bom: bool
    line_endings: str  # "LF", "CRLF", "CR", "mixed" or "none"
    detected: bool  # the delimiter was detected, not given
    header: tuple[str, ...]

    @property
    def reader_delimiter(self) -> str:
        """The delimiter of the normalised copy."""
        return "\t" if self.delimiter == WHITESPACE else self.delimiter

    def describe(self) -> str:
        """One line: delimiter, encoding, line endings."""
        how = "detected" if self.detected else "given"
        bom = " with BOM" if self.bom else ""
        return (
            f"delimiter {delimiter_label(self.delimiter)} ({how}), "
            f"encoding {self.encoding}{bom}, {self.line_endings} line endings"
        )


def delimiter_label(delimiter: str) -> str:
    """A readable name for a delimiter: ``','``, ``tab``, ``whitespace``."""
    if delimiter == "\t":
        return "tab"
    if delimiter == WHITESPACE:
        return "whitespace"
    return repr(delimiter)


def parse_delimiter(value: str | None) -> str | None:
    """The delimiter of a ``--delimiter`` value (a character or a name), or None."""
    if value is None or value.lower() == "auto":
        return None
    named = DELIMITER_NAMES.get(value.lower())
    if named is not None:
        return named
    if len(value) == 1 and value not in '"\r\n':
        return value
    names = ", ".join(sorted(DELIMITER_NAMES))
    raise DialectError(
        f"--delimiter {value!r} is not one character or one of: {names}, auto"
    )


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; a clear error for an unknown encoding."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise DialectError(
            f"unknown encoding {encoding!r}; try utf-8, latin-1 or cp1252"
        ) from exc


def prepare_csv(
    path: Path,
    target: Path,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> tuple[Dialect, Path]:
    """Make the text file ``path`` readable as UTF-8 with LF line endings: a
    normalised copy at ``target``, unless ``path`` already is that.

    ``delimiter`` is one character or :data:`WHITESPACE`; when None it is detected.
    ``.gz`` files are decompressed. Returns how the file was read and the file to
    read: ``path`` itself, with no copy written, when it already is what the copy
    would be (uncompressed UTF-8 without a byte order mark, no CR anywhere, a
    one-character delimiter: one pass over its bytes checks it), else ``target``.

    Raises:
        DialectError: the file cannot be decoded, decompressed, or split.
    """
    codec = check_encoding(encoding)
    try:
        return _prepare(path, target, delimiter, codec)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DialectError(f"{path.name}: not a valid gzip file ({exc})") from exc


def _prepare(
    path: Path, target: Path, delimiter: str | None, codec: str
) -> tuple[Dialect, Path]:
    with _open_binary(path) as raw:
        codec, bom = _bom_codec(raw.read(4), codec)
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding=_decoder(codec, bom), newline="")
        chunks = _normalised_chunks(path, text, codec)
        first, endings = next(chunks, ("", "none"))
        sample = _sample_lines(first)
        if not sample:
            raise DialectError(f"{path.name} is empty (no header line)")
        chosen = delimiter if delimiter is not None else _detect(path, sample)
        dialect = Dialect(
            delimiter=chosen,
            encoding=codec,
            bom=bom,
            line_endings=endings,
            detected=delimiter is None,
            header=_header(sample, chosen),
        )
        if _is_normalised(path, codec, bom, chosen):
            return dialect, path
        with target.open("w", encoding="utf-8", newline="") as out:
            if chosen == WHITESPACE:
                _write_whitespace(out, first, chunks)
            else:
                out.write(first)
                for chunk, _ in chunks:
                    out.write(chunk)
    return dialect, target


def _is_normalised(path: Path, codec: str, bom: bool, delimiter: str) -> bool:
    """Whether the file is byte for byte what its normalised copy would be:
    uncompressed, UTF-8 without a byte order mark, no CR, and a delimiter that is
    not :data:`WHITESPACE` (whose copy rewrites every line)."""
    # codec is canonical (check_encoding): "UTF8" and "utf_8" arrive as "utf-8"
    if path.suffix.lower() == ".gz" or codec != "utf-8" or bom:
        return False
    if delimiter == WHITESPACE:
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as raw:
        while block := raw.read(CHECK_BYTES):
            if b"\r" in block:
                return False
            if block.isascii() and not decoder.getstate()[0]:
                continue
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return False  # the copy reports where, with a hint
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _open_binary(path: Path) -> IO[bytes]:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if suffix == ".zst":
        raise DialectError(
            f"{path.name}: zstd-compressed text is not supported; "
            "decompress it or use .gz"
        )
    return path.open("rb")


def _bom_codec(head: bytes, codec: str) -> tuple[str, bool]:
    """The codec to decode with and whether the file starts with a byte order mark."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", True
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", True
    return codec, False


def _decoder(codec: str, bom: bool) -> str:
    if codec == "utf-8" and bom:
        return "utf-8-sig"
    return codec


def _normalised_chunks(
    path: Path, text: io.TextIOWrapper[IO[bytes]], codec: str
) -> Iterator[tuple[str, str]]:
    """The decoded text in chunks with LF line endings, and the first chunk's kind."""
    carry = ""
    first = True
    offset = 0
    while True:
        try:
            chunk = text.read(CHUNK_CHARS)
        except UnicodeDecodeError as exc:
            hint = "latin-1" if codec != "latin-1" else "utf-8"
            raise DialectError(
                f"{path.name} is not valid {codec}: byte 0x{exc.object[exc.start]:02x} "
                f"near character {offset + exc.start:,} cannot be decoded; "
                f"try --encoding {hint} (or cp1252)"
            ) from exc
        if not chunk:
            if carry:
                yield "\n", "none"
            return
        chunk = carry + chunk
        carry = ""
        if chunk.endswith("\r"):  # a CRLF may be split over two chunks
            chunk, carry = chunk[:-1], "\r"
        endings = _line_endings(chunk) if first else ""
        offset += len(chunk)
        yield chunk.replace("\r\n", "\n").replace("\r", "\n"), endings
        first = False


def _line_endings(text: str) -> str:
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    kinds = [name for name, n in (("LF", lf), ("CRLF", crlf), ("CR", cr)) if n]
    if not kinds:
        return "none"
    return kinds[0] if len(kinds) == 1 else "mixed"


def _sample_lines(text: str) -> list[str]:
    """The first non-blank lines of the first chunk (a partial last line dropped)."""
    lines = text.split("\n")
    if len(lines) > 1:
        lines = lines[:-1]
    return [line for line in lines[: SAMPLE_LINES + 1] if line.strip()][:SAMPLE_LINES]


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == WHITESPACE:
        return _WHITESPACE_RUN.split(line.strip())
    return next(csv.reader([line], delimiter=delimiter), [])


def _header(sample: list[str], delimiter: str) -> tuple[str, ...]:
    return tuple(field.strip() for field in _split(sample[0], delimiter))


def _detect(path: Path, sample: list[str]) -> str:
    """The candidate that splits the header and most rows into the same fields."""
    best: tuple[float, int, str] | None = None
    for delimiter in CANDIDATES:
        score = _consistency(sample, delimiter)
        if score is None:
            continue
        width = len(_split(sample[0], delimiter))
        rank = (score, width, delimiter)
        if best is None or rank[:2] > best[:2]:
            best = rank
    if best is not None and best[0] >= 0.5:
        return best[2]
    if _consistency(sample, WHITESPACE) not in (None, 0.0):
        return WHITESPACE
    header = sample[0][:80]
    raise DialectError(
        f"{path.name}: cannot detect the delimiter (tried , ; tab | and whitespace "
        f"on the header {header!r}); pass --delimiter"
    )


def _consistency(sample: list[str], delimiter: str) -> float | None:
    """Share of rows with as many fields as the header; None if the header is one."""
    if delimiter != WHITESPACE and delimiter not in sample[0]:
        return None
    width = len(_split(sample[0], delimiter))
    if width < 2:
        return None
    rows = sample[1:]
    if not rows:
        return 1.0
    if delimiter == WHITESPACE:
        same = sum(len(_split(line, delimiter)) == width for line in rows)
        return same / len(rows)
    # Quoted fields may span lines, so rows are read by a CSV reader, not by line.
    reader = csv.reader(io.StringIO("\n".join(rows)), delimiter=delimiter)
    try:
        counts = [len(row) for row in reader if row]
    except csv.Error:
        return 0.0
    if not counts:
        return 0.0
    return sum(n == width for n in counts) / len(counts)


def _write_whitespace(
    out: io.TextIOBase, first: str, rest: Iterator[tuple[str, str]]
) -> None:
    """Write lines with runs of spaces and tabs as one tab (leading ones dropped)."""
    pending = ""
    for chunk in _chain(first, rest):
        lines = (pending + chunk).split("\n")
        pending = lines.pop()
        out.write("".join(_WHITESPACE_RUN.sub("\t", ln.strip()) + "\n" for ln in lines))
    if pending:
        out.write(_WHITESPACE_RUN.sub("\t", pending.strip()) + "\n")


def _chain(first: str, rest: Iterator[tuple[str, str]]) -> Iterator[str]:
    yield first
    for chunk, _ in rest:
        yield chunk
