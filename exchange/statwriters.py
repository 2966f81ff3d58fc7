"""Streaming writers of SPSS system files (.sav) and Stata 14+ files (.dta, format 118).

Written by hand because the maintained writers convert every cell through a Python object:
pyreadstat (ReadStat) and pandas' `to_stata` each take about 10 s for a 600,000 x 40 frame on
this machine class, 36 s of a 100,000-patient export. Here a chunk of rows is laid out as one
numpy record array and written as its bytes, so a file costs about what parsing its CSV costs,
and memory is one chunk whatever the file's size. The layouts follow ReadStat's own writers
(`src/spss/readstat_sav_write.c`, `src/stata/readstat_dta_write.c`) and PSPP's description of
the system file; the tests read every file back with ReadStat (pyreadstat) and PSPP.

Only what the export needs: double and date variables, strings (SPSS very long strings over 255
bytes, Stata strL over 2,045), variable labels, value labels, a user-missing blank for SPSS
strings, measurement levels, UTF-8, uncompressed data. The registry's meaning (which column is
what, its labels) is decided in `exchange/formats.py`.
"""

import dataclasses
import datetime
import itertools
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NUMBER, DATE, STRING = "number", "date", "string"


@dataclasses.dataclass
class Variable:
    """One variable of a file. `width`: bytes of the longest UTF-8 value (strings); `decimals`:
    places of the SPSS print format (numbers); `value_labels`: value -> label (float keys for
    numbers, str for strings); `measure`: nominal, ordinal or scale (SPSS)."""

    name: str
    label: str
    kind: str
    width: int = 0
    decimals: int = 0
    value_labels: dict[Any, str] = dataclasses.field(default_factory=dict)
    measure: str = "nominal"
    blank_is_missing: bool = False


@dataclasses.dataclass
class Cells:
    """A column of str as its UTF-8 bytes laid end to end, NUL between cells: one join and one
    encode for the column, not a call per cell (text from PostgreSQL never holds NUL)."""

    data: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, values: Sequence[str]) -> "Cells":
        n = len(values)
        data = np.frombuffer("\0".join(values).encode("utf-8"), dtype=np.uint8)
        if not n:
            return cls(data, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        ends = np.append(np.flatnonzero(data == 0), len(data))
        if len(ends) != n:
            raise ValueError("a text cell holds a NUL byte")
        starts = np.concatenate(([0], ends[:-1] + 1))
        return cls(data, starts, ends - starts)

    def __len__(self) -> int:
        return len(self.starts)

    def each(self) -> Iterator[bytes]:
        data = self.data.tobytes()
        for start, length in zip(self.starts.tolist(), self.lengths.tolist(), strict=True):
            yield data[start : start + length]

    def clipped(self, size: int) -> "Cells":
        """The cells cut to at most `size` bytes each, never inside a character (few cells are
        longer: they are cut one by one)."""
        if not len(self.lengths) or int(self.lengths.max()) <= size:
            return self
        text = [cell.decode("utf-8") for cell in self.each()]
        lengths = self.lengths.tolist()  # in bytes: only the longer cells are cut
        return Cells.of([_clip(t, size).decode("utf-8") if n > size else t for t, n in zip(text, lengths, strict=True)])

    def fixed(self, width: int, pad: int) -> np.ndarray:
        """The cells as an (n, width) uint8 array, each padded with the byte `pad` (and cut to
        `width` bytes, see `clipped`)."""
        if len(self.lengths) and int(self.lengths.max()) > width:
            return self.clipped(width).fixed(width, pad)
        out = np.full((len(self.starts), width), pad, dtype=np.uint8)
        if width and len(self.data):
            at = np.flatnonzero(self.data)
            row = np.repeat(np.arange(len(self.starts)), self.lengths)
            out[row, at - self.starts[row]] = self.data[at]
        return out

    def places(self) -> int:
        """The most digits after a "." in any cell."""
        dots = np.flatnonzero(self.data == ord("."))
        if not len(dots):
            return 0
        cell = np.searchsorted(self.starts, dots, side="right") - 1
        return int((self.starts[cell] + self.lengths[cell] - dots - 1).max())


# Stata's largest double (above it: its missing codes)
DOUBLE_MAX = struct.unpack("<d", struct.pack("<Q", 0x7FDFFFFFFFFFFFFF))[0]


def _checked(numbers: np.ndarray, name: str) -> np.ndarray:
    """The doubles of a variable, refused when one cannot be stored: beyond Stata's largest double
    (its missing codes) or SPSS's (-DBL_MAX is its system-missing value), or infinite."""
    bad = np.abs(numbers) > DOUBLE_MAX
    if bad.any():
        raise ValueError(f"{name}: {numbers[bad][0]!r} is beyond what SPSS and Stata store (+/-{DOUBLE_MAX:.6g})")
    return numbers


def _doubles(values: np.ndarray, name: str, missing: bytes, days: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """(n, 8) little-endian bytes of the doubles ((value + days) x scale: dates), NaN as `missing`."""
    numbers = (_checked(np.asarray(values, dtype="<f8"), name) + days) * scale  # a new array
    cells = numbers.view(np.uint8).reshape(len(numbers), 8)
    cells[np.isnan(numbers)] = np.frombuffer(missing, dtype=np.uint8)
    return cells


class _RecordWriter:
    """What both writers share: the file, its variables, the rows declared in the header and those
    written so far, one chunk at a time as fixed-width records."""

    def __init__(self, out: BinaryIO, variables: Sequence[Variable], rows: int) -> None:
        self.out, self.variables, self.rows, self.written = out, list(variables), rows, 0

    def _emit(self, record: np.ndarray) -> None:
        self.out.write(record.tobytes())
        self.written += len(record)

    def _check_rows(self) -> None:
        if self.written != self.rows:
            raise ValueError(f"{self.written} rows written, {self.rows} declared")


def _clip(text: str, size: int) -> bytes:
    """`text` as UTF-8 in at most `size` bytes, never cutting a character."""
    return text.encode("utf-8")[:size].decode("utf-8", "ignore").encode("utf-8")


# ----------------------------------------------------------------------------- SPSS (.sav)

SAV_SYSMIS = struct.pack("<Q", 0xFFEFFFFFFFFFFFFF)
SAV_HIGHEST = struct.pack("<Q", 0x7FEFFFFFFFFFFFFF)
SAV_LOWEST = struct.pack("<Q", 0xFFEFFFFFFFFFFFFE)
SAV_MEASURES = {"nominal": 1, "ordinal": 2, "scale": 3}
SAV_FORMAT_A, SAV_FORMAT_F, SAV_FORMAT_SDATE = 1, 5, 39
SPSS_EPOCH_DAYS = 141428  # 1582-10-14 to 1970-01-01
SAV_SEGMENT = 252  # bytes of a very long string per 255-wide segment (ReadStat's and SPSS's rule)
SAV_MAX_WIDTH = 32767  # SPSS's longest string; a longer text is cut there (exchange/formats.py says so)


def _sav_segments(width: int) -> list[int]:
    """The widths of the dictionary variables a string of `width` bytes takes."""
    if width <= 255:
        return [max(width, 1)]
    n = (width + SAV_SEGMENT - 1) // SAV_SEGMENT
    return [255] * (n - 1) + [width - (n - 1) * SAV_SEGMENT]


def _sav_storage(width: int) -> int:
    return sum((w + 7) // 8 * 8 for w in _sav_segments(width))


def _sav_format(kind: int, width: int, decimals: int) -> int:
    return (kind << 16) | (min(width, 255) << 8) | decimals


def _short_names(variables: Sequence[Variable]) -> list[list[str]]:
    """Each variable's 8-byte dictionary names, one per segment (a very long string has several),
    every one unique in the file: the long name's first 8 characters upper-cased where free, else
    V1, V2, ... (the long names, record 7.13, are what readers show)."""
    used: set[str] = set()
    numbered = (f"V{i}" for i in itertools.count(1))

    def claim(wanted: str) -> str:
        name = wanted if wanted[:1].isalpha() and wanted.isascii() and wanted not in used else ""
        while not name or name in used:
            name = next(numbered)
        used.add(name)
        return name

    out = []
    for v in variables:
        first = claim(v.name[:8].upper())
        count = len(_sav_segments(v.width)) if v.kind == STRING else 1
        out.append([first] + [claim(f"{first[:5]}{s}") for s in range(1, count)])
    return out


class SavWriter(_RecordWriter):
    """`SavWriter(out, variables, rows, file_label, when)`, then `write(columns)` per chunk of rows
    (one per variable: float64 arrays for numbers, NaN blank, and for dates, days since
    1970-01-01; `Cells` for strings), `rows` rows in all."""

    def __init__(
        self, out: BinaryIO, variables: Sequence[Variable], rows: int, file_label: str, when: datetime.datetime
    ) -> None:
        super().__init__(out, variables, rows)
        self.storage = [8 if v.kind != STRING else _sav_storage(v.width) for v in self.variables]
        self.out.write(self._dictionary(file_label, when))

    def _dictionary(self, file_label: str, when: datetime.datetime) -> bytes:
        variables = self.variables
        segment_names = _short_names(variables)
        shorts = [names[0] for names in segment_names]
        head = bytearray()
        case_units = sum(self.storage) // 8
        stamp_date = f"{when:%d} {MONTHS[when.month - 1]} {when:%y}".encode("ascii")
        head += b"$FL2" + b"@(#) SPSS DATA FILE - sacroplasty registry".ljust(60)
        head += struct.pack("<5i", 2, case_units, 0, 0, self.rows) + struct.pack("<d", 100.0)
        head += stamp_date + f"{when:%H:%M:%S}".encode("ascii") + _clip(file_label, 64).ljust(64) + b"\0" * 3
        index = {}  # variable -> its 1-based dictionary index (8-byte units before it + 1)
        units = 0
        for v, names, storage in zip(variables, segment_names, self.storage, strict=True):
            index[v.name] = units + 1
            units += storage // 8
            if v.kind == STRING:
                segments = _sav_segments(v.width)
                for s, width in enumerate(segments):
                    name = names[s]
                    label = v.label if s == 0 else ""
                    missing = 1 if s == 0 and v.blank_is_missing and v.width <= 8 else 0
                    fmt = _sav_format(SAV_FORMAT_A, width, 0)
                    head += self._variable_record(width, label, missing, fmt, name)
                    if missing:
                        head += b" " * 8
                    head += self._continuations((width + 7) // 8 - 1)
            else:
                fmt = (
                    _sav_format(SAV_FORMAT_SDATE, 10, 0)
                    if v.kind == DATE
                    else _sav_format(SAV_FORMAT_F, max(8, v.decimals + 10), v.decimals)
                )
                head += self._variable_record(0, v.label, 0, fmt, names[0])
        for v in variables:  # value labels of numbers and short strings: records 3 and 4
            if not v.value_labels or (v.kind == STRING and v.width > 8):
                continue
            head += struct.pack("<ii", 3, len(v.value_labels))
            for value, label in v.value_labels.items():
                key = struct.pack("<d", value) if v.kind != STRING else _clip(value, 8).ljust(8)
                text = _clip(label, 120)
                head += key + bytes([len(text)]) + text.ljust((len(text) + 1 + 7) // 8 * 8 - 1)
            head += struct.pack("<iii", 4, 1, index[v.name])
        head += self._info(3, 4, struct.pack("<8i", 20, 0, 0, -1, 1, 1, 2, 65001))  # integers; UTF-8
        head += self._info(4, 8, SAV_SYSMIS + SAV_HIGHEST + SAV_LOWEST)
        display = bytearray()
        for v in variables:
            width = 10 if v.kind == DATE else min(max(v.width, 8), 60) if v.kind == STRING else 8
            align = 0 if v.kind == STRING else 1
            for _ in _sav_segments(v.width) if v.kind == STRING else [0]:
                display += struct.pack("<3i", SAV_MEASURES[v.measure], width, align)
        head += self._info(11, 4, bytes(display))
        names = "\t".join(f"{s}={v.name[:64]}" for s, v in zip(shorts, variables, strict=True)).encode("utf-8")
        head += self._info(13, 1, names)
        very_long = b"".join(
            f"{s}={v.width}".encode("ascii") + b"\0\t"
            for s, v in zip(shorts, variables, strict=True)
            if v.kind == STRING and v.width > 255
        )
        if very_long:
            head += self._info(14, 1, very_long)
        head += self._info(20, 1, b"UTF-8")
        long_labels = bytearray()
        long_missing = bytearray()
        for v in variables:
            if v.kind != STRING or v.width <= 8:
                continue
            name = v.name.encode("utf-8")
            if v.value_labels:
                long_labels += struct.pack("<i", len(name)) + name + struct.pack("<ii", v.width, len(v.value_labels))
                for value, label in v.value_labels.items():
                    text = _clip(label, 120)
                    long_labels += struct.pack("<i", v.width) + _clip(value, v.width).ljust(v.width)
                    long_labels += struct.pack("<i", len(text)) + text
            if v.blank_is_missing:
                long_missing += struct.pack("<i", len(name)) + name + bytes([1]) + struct.pack("<i", 8) + b" " * 8
        if long_labels:
            head += self._info(21, 1, bytes(long_labels))
        if long_missing:
            head += self._info(22, 1, bytes(long_missing))
        head += self._info(16, 8, struct.pack("<qq", 1, self.rows))
        head += struct.pack("<ii", 999, 0)
        return bytes(head)

    @staticmethod
    def _variable_record(type_: int, label: str, missing: int, fmt: int, name: str) -> bytes:
        text = _clip(label, 255)
        record = struct.pack("<iiiiii", 2, type_, 1 if text else 0, missing, fmt, fmt) + name.encode().ljust(8)
        if text:
            record += struct.pack("<i", len(text)) + text.ljust((len(text) + 3) // 4 * 4, b" ")
        return record

    @staticmethod
    def _continuations(n: int) -> bytes:
        return (struct.pack("<iiiiii", 2, -1, 0, 0, 0x011D01, 0x011D01) + b" " * 8) * n

    @staticmethod
    def _info(subtype: int, size: int, data: bytes) -> bytes:
        return struct.pack("<iiii", 7, subtype, size, len(data) // size) + data

    def write(self, columns: Sequence[np.ndarray]) -> None:
        n = len(columns[0]) if columns else 0
        record = np.empty((n, sum(self.storage)), dtype=np.uint8)
        at = 0
        for v, storage, values in zip(self.variables, self.storage, columns, strict=True):
            if v.kind == STRING:
                record[:, at : at + storage] = 32
                text = values.fixed(v.width, 32)
                if v.width <= 255:
                    record[:, at : at + text.shape[1]] = text
                else:  # 255 bytes of the value per 256-byte segment, the rest in the last (ReadStat's layout)
                    for s in range(0, v.width, 255):
                        piece = text[:, s : s + 255]
                        start = at + s // 255 * 256
                        record[:, start : start + piece.shape[1]] = piece
            elif v.kind == DATE:  # seconds since 1582-10-14
                record[:, at : at + 8] = _doubles(values, v.name, SAV_SYSMIS, SPSS_EPOCH_DAYS, 86400.0)
            else:
                record[:, at : at + 8] = _doubles(values, v.name, SAV_SYSMIS)
            at += storage
        self._emit(record)

    def close(self) -> None:
        self._check_rows()


# ----------------------------------------------------------------------------- Stata (.dta 118)

DTA_MISSING = struct.pack("<Q", 0x7FE0000000000000)  # "."
DTA_DOUBLE, DTA_STRL, DTA_STR_MAX = 65526, 32768, 2045
STATA_EPOCH_DAYS = 3653  # 1960-01-01 to 1970-01-01


class DtaWriter(_RecordWriter):
    """As SavWriter, for Stata: numbers are doubles (value labels take whole numbers), dates %td,
    strings str1-str2045 or strL beyond; `close()` writes the long strings and the value labels."""

    def __init__(
        self, out: BinaryIO, variables: Sequence[Variable], rows: int, file_label: str, when: datetime.datetime
    ) -> None:
        super().__init__(out, variables, rows)
        self.strl = [v.kind == STRING and v.width > DTA_STR_MAX for v in self.variables]
        self.sizes = [
            8 if v.kind != STRING or long else max(v.width, 1) for v, long in zip(variables, self.strl, strict=True)
        ]
        self.long_strings = tempfile.TemporaryFile()  # the strLs' GSO records, written out at close
        self.tables = self._value_labels()
        self.out.write(self._head(file_label, when))

    def _value_labels(self) -> bytes:
        out = bytearray(b"<value_labels>")
        for v in self.variables:
            if not self._labelled(v):
                continue
            pairs = sorted((int(value), _clip(label, 32000)) for value, label in v.value_labels.items())
            text = b"".join(label + b"\0" for _, label in pairs)
            offsets, at = [], 0
            for _, label in pairs:
                offsets.append(at)
                at += len(label) + 1
            table = struct.pack("<ii", len(pairs), len(text))
            table += struct.pack(f"<{len(pairs)}i", *offsets) + struct.pack(f"<{len(pairs)}i", *(k for k, _ in pairs))
            table += text
            out += b"<lbl>" + struct.pack("<i", len(table)) + v.name.encode().ljust(129, b"\0") + b"\0" * 3
            out += table + b"</lbl>"
        return bytes(out + b"</value_labels>")

    def _head(self, file_label: str, when: datetime.datetime) -> bytes:
        variables, k = self.variables, len(self.variables)
        label = _clip(file_label, 80)
        stamp = f"{when:%d} {MONTHS[when.month - 1]} {when:%Y %H:%M}".encode("ascii")
        header = b"<stata_dta><header><release>118</release><byteorder>LSF</byteorder>"
        header += b"<K>" + struct.pack("<H", k) + b"</K><N>" + struct.pack("<Q", self.rows) + b"</N>"
        header += b"<label>" + struct.pack("<H", len(label)) + label + b"</label>"
        header += b"<timestamp>" + bytes([len(stamp)]) + stamp + b"</timestamp></header>"
        types = [DTA_STRL if long else size if v.kind == STRING else DTA_DOUBLE for v, long, size in self._each()]
        parts = [
            b"<variable_types>" + struct.pack(f"<{k}H", *types) + b"</variable_types>",
            b"<varnames>" + b"".join(v.name.encode().ljust(129, b"\0") for v in variables) + b"</varnames>",
            b"<sortlist>" + b"\0" * (2 * (k + 1)) + b"</sortlist>",
            b"<formats>"
            + b"".join(self._format(v, long, size).ljust(57, b"\0") for v, long, size in self._each())
            + b"</formats>",
            b"<value_label_names>"
            + b"".join((v.name.encode() if self._labelled(v) else b"").ljust(129, b"\0") for v in variables)
            + b"</value_label_names>",
            b"<variable_labels>"
            + b"".join(_clip(v.label, 80).ljust(321, b"\0") for v in variables)
            + b"</variable_labels>",
            b"<characteristics></characteristics>",
        ]
        self.map_at = len(header)
        self.marks = [0, self.map_at]  # the map: where each part starts (the last four are known at close)
        at = self.map_at + len(b"<map></map>") + 14 * 8
        for part in parts:
            self.marks.append(at)
            at += len(part)
        self.marks.append(at)  # <data>
        return header + b"<map>" + b"\0" * (14 * 8) + b"</map>" + b"".join(parts) + b"<data>"

    def _each(self) -> Any:
        return zip(self.variables, self.strl, self.sizes, strict=True)

    @staticmethod
    def _labelled(v: Variable) -> bool:
        return bool(v.value_labels) and v.kind == NUMBER  # Stata labels whole numbers only

    @staticmethod
    def _format(v: Variable, long: bool, size: int) -> bytes:
        if v.kind == DATE:
            return b"%td"
        if v.kind == STRING:
            return b"%9s" if long else f"%-{size}s".encode()
        return b"%8.0g" if v.value_labels else b"%9.0g"

    def write(self, columns: Sequence[np.ndarray]) -> None:
        n = len(columns[0]) if columns else 0
        record = np.zeros((n, sum(self.sizes)), dtype=np.uint8)
        at = 0
        for i, ((v, long, size), values) in enumerate(zip(self._each(), columns, strict=True)):
            if long:  # strL: (variable, observation) of a GSO written at the end; (0, 0) is ""
                refs = np.zeros((n, 8), dtype=np.uint8)
                for row, value in enumerate(values.each()):
                    if value:
                        o = self.written + row + 1
                        self.long_strings.write(b"GSO" + struct.pack("<IQBi", i + 1, o, 0x82, len(value) + 1))
                        self.long_strings.write(value + b"\0")
                        refs[row] = np.frombuffer(struct.pack("<H", i + 1) + o.to_bytes(6, "little"), np.uint8)
                record[:, at : at + 8] = refs
            elif v.kind == STRING:
                record[:, at : at + size] = values.fixed(size, 0)
            elif v.kind == DATE:  # days since 1960-01-01
                record[:, at : at + 8] = _doubles(values, v.name, DTA_MISSING, STATA_EPOCH_DAYS)
            else:
                record[:, at : at + 8] = _doubles(values, v.name, DTA_MISSING)
            at += size
        self._emit(record)

    def close(self) -> None:
        """The strLs, value labels and the map (written over its placeholder: `out` must seek)."""
        self._check_rows()
        out = self.out
        out.write(b"</data>")
        strls_at = out.tell()
        out.write(b"<strls>")
        with self.long_strings as spool:
            spool.seek(0)
            shutil.copyfileobj(spool, out)
        out.write(b"</strls>")
        labels_at = out.tell()
        out.write(self.tables)
        end_at = out.tell()
        out.write(b"</stata_dta>")
        offsets = [*self.marks, strls_at, labels_at, end_at, out.tell()]
        here = out.tell()
        out.seek(self.map_at + len(b"<map>"))
        out.write(struct.pack("<14Q", *offsets))
        out.seek(here)
