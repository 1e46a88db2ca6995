"""The sweep table on disk: CSV or Parquet, chosen by the file suffix.

Rows are dicts keyed by `gemmstone.sim.sweep.run.COLUMNS`; a missing value (a failed
point's results, an invalid point) is an empty CSV cell or a Parquet null.
"""

from __future__ import annotations

import csv
from pathlib import Path

from gemmstone.sim.sweep.grid import FIELDS
from gemmstone.sim.sweep.run import COLUMNS

__all__ = ["write_table", "read_table", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".parquet")
_STRINGS = {name for name, kind in FIELDS.items() if kind is str} | {
    "memory", "engine", "workload", "error"}
_FLOATS = {"utilization", "roof_utilization", "intensity", "compile_s", "estimate_s",
           "wall_s"}


def _suffix(path: Path) -> str:
    if path.suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: the table file must end in {' or '.join(TABLE_SUFFIXES)}, "
                         f"not {path.suffix or 'no suffix'!r}")
    return path.suffix


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ValueError("Parquet tables need pyarrow: pip install 'gemmstone[sweep]' (or "
                         "write a .csv)") from None
    return pyarrow, pyarrow.parquet


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` (.csv, or .parquet through pyarrow); returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        return path
    pa, pq = _pyarrow()

    def kind(column: str):
        if column in _STRINGS:
            return pa.string()
        return pa.float64() if column in _FLOATS else pa.int64()

    schema = pa.schema([(column, kind(column)) for column in COLUMNS])
    columns = {column: [row.get(column) for row in rows] for column in COLUMNS}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), path)
    return path


def _value(column: str, text: str):
    if text == "":
        return None
    if column in _STRINGS:
        return text
    return float(text) if column in _FLOATS else int(text)


def read_table(path: str | Path) -> list[dict]:
    """The rows of a table written by `write_table`, with the types it was written with."""
    path = Path(path)
    if _suffix(path) == ".csv":
        with path.open(newline="") as file:
            return [{column: _value(column, row[column]) for column in COLUMNS}
                    for row in csv.DictReader(file)]
    _, pq = _pyarrow()
    return pq.read_table(path).to_pylist()
