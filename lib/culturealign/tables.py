"""Declared tables: each artifact's columns with their type, unit and meaning, written once beside
the module that writes it. Writers validate what they write; the summary, the report and its
glossary read the declarations (docs/tables.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from .runs import write_table

Dtype = Literal["str", "int", "float", "bool", "list", "lists"]  # list: a list of values; lists: one list per draw
NESTED = {"list": ("position",), "lists": ("draw", "position")}  # a nested column's index in its long table
Unit = Literal["", "%", "points", "probability", "p-value", "count", "distance", "share"]
PERCENT_UNITS = ("%", "points")  # shown with one decimal


class TableError(ValueError):
    """A frame that does not match its table's declaration."""


@dataclass(frozen=True)
class Column:
    """One declared column: its name, type, unit and meaning, and its header in words. An optional
    column is written only where its meaning says (e.g. sampled mode)."""

    name: str
    dtype: Dtype
    unit: Unit
    meaning: str
    header: str = ""
    optional: bool = False
    of: Dtype = "float"  # the type of a nested column's values

    @property
    def words(self) -> str:
        """The header a reader sees."""
        return self.header or self.name.replace("_", " ")

    def renamed(self, name: str, meaning: str | None = None, header: str = "") -> Column:
        """The same kind of value under another name (e.g. before and after demonstrations)."""
        return replace(self, name=name, meaning=meaning or self.meaning, header=header)


@dataclass(frozen=True)
class Table:
    """One artifact: its file name, what a row is, and its columns in order."""

    file: str
    row: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # the columns that name a row: the long tables of nested columns join on them

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The declared column of a name; a KeyError names the table and its columns."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.file} declares no column {name!r}; it declares {', '.join(self.names)}")

    def with_columns(self, *columns: Column) -> Table:
        """This declaration with more columns at its end."""
        return replace(self, columns=(*self.columns, *columns))

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with its columns in declared order, after checking that it has every required
        column, no undeclared one, and values of the declared types."""
        missing = [c.name for c in self.columns if not c.optional and c.name not in frame.columns]
        extra = [c for c in frame.columns if c not in self.names]
        if missing or extra:
            raise TableError(
                f"{self.file}: columns missing {missing}, undeclared {extra}; declare them in its Table "
                f"or compute them (declared: {', '.join(self.names)})"
            )
        for c in self.columns:
            if c.name in frame.columns and not _has_type(frame[c.name], c.dtype):
                raise TableError(f"{self.file}: column {c.name!r} should hold {c.dtype}, holds {frame[c.name].dtype}")
        return frame[[n for n in self.names if n in frame.columns]]

    def filled(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`validate` after adding the declared columns that no row computed (all missing), e.g. the
        statistics of a condition that served no probe; an undeclared column is still refused."""
        return self.validate(frame.reindex(columns=[*self.names, *(c for c in frame.columns if c not in self.names)]))

    @property
    def nested(self) -> list[Column]:
        """Columns of lists: each is stored as a long table of its own (`long_table`)."""
        return [c for c in self.columns if c.dtype in NESTED]

    def long_table(self, column: Column) -> Table:
        """The long table a nested column is stored in: the row's key, the list index, the value."""
        index = tuple(Column(i, "int", "", f"position in {column.name}") for i in NESTED[column.dtype])
        key = tuple(self.column(k) for k in self.key)
        value = Column("value", column.of, column.unit, column.meaning)
        stem = self.file.removesuffix(".csv")
        return Table(f"{stem}__{column.name}.csv", f"one value of {column.name} of a {self.row}", (*key, *index, value))

    def write(self, frame: pd.DataFrame, folder: Path) -> list[Path]:
        """Validate the frame and write it atomically as <folder>/<file>, each nested column as its long table."""
        frame = self.validate(frame)
        flat = frame.drop(columns=[c.name for c in self.nested if c.name in frame])
        written = [write_table(folder / self.file, flat)]
        for column in self.nested:
            if column.name in frame:
                long = self.long_table(column)
                written.append(write_table(folder / long.file, long.validate(_long(frame, self.key, column))))
        return written

    def read(self, folder: Path) -> pd.DataFrame:
        """<folder>/<file> with its nested columns rebuilt from their long tables, checked against the declaration."""
        frame = pd.read_csv(folder / self.file)
        for column in self.nested:
            path = folder / self.long_table(column).file
            if path.exists():
                long = pd.read_csv(path)
                frame[column.name] = _nest(long, frame, self.key, column)
        return self.validate(frame)


def _has_type(values: pd.Series, dtype: Dtype) -> bool:
    """Whether every non-missing value is of the declared type (a CSV round trip included)."""
    present = values.dropna()
    if present.empty:
        return True
    if dtype == "float":
        return pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    if dtype == "int":
        return pd.api.types.is_integer_dtype(present) or (
            pd.api.types.is_float_dtype(present) and bool((present == present.round()).all())
        )
    if dtype in NESTED:
        return bool(present.map(lambda v: isinstance(v, (list, tuple))).all())
    if dtype == "bool":
        words = present.astype(str).str.lower()
        return pd.api.types.is_bool_dtype(present) or bool(words.isin(["true", "false"]).all())
    return True  # text: a CSV reads text that looks like numbers as numbers


def _long(frame: pd.DataFrame, key: tuple[str, ...], column: Column) -> pd.DataFrame:
    """A nested column as rows: the row's key, the position(s) in the list, the value."""
    index = NESTED[column.dtype]
    rows = []
    for keys, value in zip(frame[list(key)].itertuples(index=False), frame[column.name]):
        if not isinstance(value, (list, tuple)):
            continue
        outer = value if column.dtype == "lists" else [value]
        for d, inner in enumerate(outer):
            for i, v in enumerate(inner):
                rows.append((*keys, *((d, i) if column.dtype == "lists" else (i,)), v))
    return pd.DataFrame(rows, columns=[*key, *index, "value"])


def _nest(long: pd.DataFrame, frame: pd.DataFrame, key: tuple[str, ...], column: Column) -> list:
    """A long table back into one list (or list of lists) per row of `frame`, NaN where it has none."""
    index = list(NESTED[column.dtype])
    nested: dict[tuple, list] = {}
    for keys, group in long.sort_values([*key, *index]).groupby(list(key), sort=False, dropna=False):
        keys = _joined(keys if isinstance(keys, tuple) else (keys,))
        if column.dtype == "lists":
            nested[keys] = [g["value"].tolist() for _, g in group.groupby("draw", sort=True)]
        else:
            nested[keys] = group["value"].tolist()
    return [nested.get(_joined(k), float("nan")) for k in frame[list(key)].itertuples(index=False)]


def _joined(keys: tuple) -> tuple:
    """A row's key as the long table and the table join on: an empty cell (e.g. stage 97's default
    persona, written as an empty string and read back as missing) is None on both sides."""
    return tuple(None if pd.isna(k) else k for k in keys)
