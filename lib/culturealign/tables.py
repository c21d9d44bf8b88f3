"""Declared tables: each artifact's columns with their type, unit and meaning, written once beside
the module that writes it. Writers validate what they write; the summary, the report and its
glossary read the declarations (docs/tables.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from .runs import write_table

# list: a list of values; lists: one list per draw; dict: values by a key (e.g. probabilities by answer code)
Dtype = Literal["str", "int", "float", "bool", "list", "lists", "dict"]
NESTED = {"list": ("position",), "lists": ("draw", "position"), "dict": ()}  # positions in a nested column's long table
Unit = Literal["", "%", "points", "probability", "p-value", "count", "distance", "share"]
PERCENT_UNITS = ("%", "points")  # shown with one decimal


class TableError(ValueError):
    """A frame that does not match its table's declaration."""


@dataclass(frozen=True)
class Column:
    """One declared column: its name, type, unit and meaning, and its header in words. An optional
    column is written only where its meaning says (e.g. sampled mode). A dict column names its keys
    (`keys`: their column in the long table, and its type). A nested column's row with no entries
    in its long table reads as missing, or as an empty list or dict where `empty_when_absent` says
    the row holds one (a probe without demonstrations)."""

    name: str
    dtype: Dtype
    unit: Unit
    meaning: str
    header: str = ""
    optional: bool = False
    of: Dtype = "float"  # the type of a nested column's values
    keys: tuple[str, Dtype] = ("key", "str")  # a dict column's keys: their name and type in its long table
    empty_when_absent: bool = False  # a nested row without entries reads as [] or {} rather than missing

    @property
    def words(self) -> str:
        """The header a reader sees."""
        return self.header or self.name.replace("_", " ")

    def renamed(self, name: str, meaning: str | None = None, header: str = "") -> Column:
        """The same kind of value under another name (e.g. before and after demonstrations)."""
        return replace(self, name=name, meaning=meaning or self.meaning, header=header)

    @property
    def index(self) -> tuple[Column, ...]:
        """What a nested column's long table adds to the row's key: the position(s) in a list, or
        the key of a dict."""
        if self.dtype == "dict":
            return (Column(self.keys[0], self.keys[1], "", f"key in {self.name}"),)
        return tuple(Column(i, "int", "", f"position in {self.name}") for i in NESTED[self.dtype])


@dataclass(frozen=True)
class Table:
    """One artifact: its file name, what a row is, and its columns in order."""

    file: str
    row: str
    columns: tuple[Column, ...]
    # the columns that name a row: the long tables of nested columns join on them; an optional one
    # (e.g. the method, in one stage's table only) is part of the key where it is written
    key: tuple[str, ...] = ()

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
        """Nested columns (lists, lists per draw, dicts): each is stored as a long table of its own (`long_table`)."""
        return [c for c in self.columns if c.dtype in NESTED]

    def long_table(self, column: Column) -> Table:
        """The long table a nested column is stored in: the row's key, the list index or dict key, the value."""
        key = tuple(self.column(k) for k in self.key)
        value = Column("value", column.of, column.unit, column.meaning)
        stem = self.file.removesuffix(".csv")
        return Table(
            f"{stem}__{column.name}.csv", f"one value of {column.name} of a {self.row}", (*key, *column.index, value)
        )

    def key_of(self, frame: pd.DataFrame) -> tuple[str, ...]:
        """The key columns a frame has (an optional key column may be absent)."""
        return tuple(k for k in self.key if k in frame.columns)

    def write(self, frame: pd.DataFrame, folder: Path) -> list[Path]:
        """Validate the frame and write it atomically as <folder>/<file>, each nested column as its
        long table; a long table of a nested column the frame lacks is removed (an earlier run's)."""
        frame = self.validate(frame)
        nested = [c for c in self.nested if c.name in frame]
        if nested:
            _check_key(self, frame)
        flat = frame.drop(columns=[c.name for c in nested])
        written = [write_table(folder / self.file, flat)]
        for column in self.nested:
            long = self.long_table(column)
            if column in nested:
                rows = _long(frame, self.key_of(frame), column)
                written.append(write_table(folder / long.file, long.validate(rows)))
            else:
                (folder / long.file).unlink(missing_ok=True)
        return written

    def read(self, folder: Path) -> pd.DataFrame:
        """<folder>/<file> with its nested columns rebuilt from their long tables, checked against the
        declaration. A required text column reads an empty cell as the empty string it was written
        from; any other empty cell is missing (NaN)."""
        frame = _read_csv(self, folder / self.file)
        for column in self.nested:
            long_table = self.long_table(column)
            if (folder / long_table.file).exists():
                long = _read_csv(long_table, folder / long_table.file)
                frame[column.name] = _nest(long, frame, self.key_of(frame), column)
        return self.validate(frame)


def _read_csv(table: Table, path: Path) -> pd.DataFrame:
    """A CSV with each required text column's empty cells as the empty strings they were written from."""
    frame = pd.read_csv(path)
    for c in table.columns:
        if c.dtype == "str" and not c.optional and c.name in frame and frame[c.name].isna().any():
            frame[c.name] = frame[c.name].astype(object).where(frame[c.name].notna(), "")
    return frame


def _check_key(table: Table, frame: pd.DataFrame) -> None:
    """Refuse a frame whose key names a row more than once: its long tables could not be joined back."""
    key = list(table.key_of(frame))
    if not key:
        raise TableError(f"{table.file}: its nested columns need a key (the columns that name a row); declare one")
    repeated = frame[frame.duplicated(key, keep=False)]
    if len(repeated):
        raise TableError(
            f"{table.file}: the key {key} does not name each row once ({len(repeated)} rows share a key, "
            f"e.g. {repeated[key].iloc[0].to_dict()}); declare the column that tells them apart as part of the key"
        )


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
    if dtype == "dict":
        return bool(present.map(lambda v: isinstance(v, dict)).all())
    if dtype in NESTED:
        return bool(present.map(lambda v: isinstance(v, (list, tuple))).all())
    if dtype == "bool":
        words = present.astype(str).str.lower()
        return pd.api.types.is_bool_dtype(present) or bool(words.isin(["true", "false"]).all())
    return True  # text: a CSV reads text that looks like numbers as numbers


def _long(frame: pd.DataFrame, key: tuple[str, ...], column: Column) -> pd.DataFrame:
    """A nested column as rows: the row's key, the position(s) in the list or the dict's key, the value."""
    rows = []
    for keys, value in zip(frame[list(key)].itertuples(index=False), frame[column.name]):
        if column.dtype == "dict" and isinstance(value, dict):
            rows.extend((*keys, k, v) for k, v in value.items())
        elif column.dtype == "lists" and isinstance(value, (list, tuple)):
            rows.extend((*keys, d, i, v) for d, inner in enumerate(value) for i, v in enumerate(inner))
        elif column.dtype == "list" and isinstance(value, (list, tuple)):
            rows.extend((*keys, i, v) for i, v in enumerate(value))
    return pd.DataFrame(rows, columns=[*key, *(c.name for c in column.index), "value"])


def _nest(long: pd.DataFrame, frame: pd.DataFrame, key: tuple[str, ...], column: Column) -> list:
    """A long table back into one list, list of lists or dict per row of `frame`; a row with no
    entries is missing (NaN), or empty where the column says so. A dict keeps the order its long
    table lists its keys in. Rows join on the key, an empty key cell
    (e.g. no culture) included."""
    key = list(key)
    index = [c.name for c in column.index]
    if column.dtype != "dict":
        long = long.sort_values([*key, *index], kind="stable")
    keys, values = [], []
    for keys_of_group, group in long.groupby(key, sort=False, dropna=False):
        keys.append(keys_of_group)
        values.append(_nested_value(group, column, index))
    found = pd.DataFrame(keys, columns=key).astype(object).assign(_nested=values)
    joined = frame[key].astype(object).merge(found, on=key, how="left")
    empty = (dict if column.dtype == "dict" else list) if column.empty_when_absent else (lambda: float("nan"))
    return [v if isinstance(v, (list, dict)) else empty() for v in joined["_nested"]]


def _nested_value(group: pd.DataFrame, column: Column, index: list[str]) -> list | dict:
    """One row's nested value from its rows of the long table (in order)."""
    if column.dtype == "dict":
        return dict(zip(group[index[0]].tolist(), group["value"].tolist()))
    if column.dtype == "lists":
        return [g["value"].tolist() for _, g in group.groupby("draw", sort=True)]
    return group["value"].tolist()
