"""CSV that is safe to open in Excel, written as a stream.

Every CSV the registry produces (exports, audit trail, consent register) goes
through `neutralise`: a text cell starting with =, +, -, @, tab, CR or LF gets
a leading apostrophe (OWASP CSV injection); numbers stay numbers.
"""

import csv
import datetime
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralise(value: Any) -> Any:
    """The cell as written: None -> "", bools -> yes/no, dates ISO, risky text prefixed with '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, Decimal)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    text = str(value)
    if text.startswith(DANGEROUS_FIRST):
        return "'" + text
    return text


class _Echo:
    def write(self, value: str) -> str:
        return value


def stream_csv(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """Yield CSV text line by line (for StreamingHttpResponse or a zip entry)."""
    writer = csv.writer(_Echo(), lineterminator="\n")
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([neutralise(v) for v in row])
