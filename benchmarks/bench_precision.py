"""What bfloat16 does to the numbers a reader sees: the same job in float32 and in bfloat16 on this
machine, every summary number side by side with its largest difference and the width of the
interval (or one-run range) printed beside it.

    python -m benchmarks.bench_precision                  # runs the tour twice, then compares
    python -m benchmarks.bench_precision --compare-only   # compares two finished tours

Each tour runs with `--dtype` into its own outputs folder (outputs/precision/<dtype>/), so the two
never share a cache or a run. The comparison reads the summary CSVs of both (outputs/.../summary/),
matches rows on their text columns (model, language, condition, culture, method, ...) and, for every
number that has an interval in the same table, reports |bf16 - fp32| against that interval's width:
the issue's target is a tenth of it. Writes outputs/bench/precision.json (the benchmarks page).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from culturealign import paths
from culturealign.culturespa_eval_tables import TRAINING
from culturealign.precision import cpu_model
from culturealign.report import read_manifests, wall_seconds
from culturealign.results import write_bench
from culturealign.tables import NESTED

DTYPES = ("float32", "bfloat16")
TARGET = 0.1  # a headline may move by at most this share of its interval's width
# A number's interval in its own table, where the column names do not follow <name>_low/_high.
INTERVALS = {
    "mean_delta": ("delta_ci_low", "delta_ci_high"),
    "expected": ("low", "high"),  # CultureSPA's expected score and the one-run interval around it
    "difference": ("low", "high"),  # CultureSPA's method differences
    "mean": ("low", "high"),  # the distributional stage's per-country distances and headlines
}
SUFFIXES = (("_low", "_high"), ("_run_low", "_run_high"), ("_ci_low", "_ci_high"))


def interval_of(column: str, columns: list[str]) -> tuple[str, str] | None:
    """The (low, high) columns of a number's interval in its table, if it has one."""
    pairs = [INTERVALS[column]] if column in INTERVALS else []
    pairs += [(column + lo, column + hi) for lo, hi in SUFFIXES]
    return next((p for p in pairs if p[0] in columns and p[1] in columns), None)


def keys_of(frame: pd.DataFrame) -> list[str]:
    """The columns that name a row (text, flags, and a long table's positions in its nested
    column), on which the two precisions' rows are matched."""
    positions = {i for index in NESTED.values() for i in index}
    return [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or frame[c].dtype == bool or c in positions
    ]


def compare_table(name: str, fp32: pd.DataFrame, bf16: pd.DataFrame) -> list[dict[str, object]]:
    """One row per number: its largest |bf16 - fp32| over the table's rows and, where its table
    gives it an interval, that interval's width in the worst row (the narrower of the two runs')
    and their ratio."""
    keys = [k for k in keys_of(fp32) if k in bf16.columns]
    both = fp32.merge(bf16, on=keys, suffixes=("_fp32", "_bf16"), how="inner") if keys else pd.DataFrame()
    rows = []
    numbers = [c for c in fp32.columns if c not in keys and pd.api.types.is_numeric_dtype(fp32[c])]
    bounds = {b for c in numbers for b in (interval_of(c, list(fp32.columns)) or ())}
    numbers = [c for c in numbers if c not in bounds]  # an interval's ends are read with its number
    for column in numbers:
        interval = interval_of(column, list(fp32.columns))
        if both.empty or f"{column}_bf16" not in both:
            continue
        diff = (both[f"{column}_bf16"] - both[f"{column}_fp32"]).abs()
        width = pd.Series(np.nan, index=both.index)
        if interval is not None:
            width = np.minimum(
                both[f"{interval[1]}_fp32"] - both[f"{interval[0]}_fp32"],
                both[f"{interval[1]}_bf16"] - both[f"{interval[0]}_bf16"],
            )
        ratio = diff / width.where(width > 0)
        if diff.notna().sum() == 0:
            continue
        worst = int(ratio.fillna(-1).to_numpy().argmax()) if ratio.notna().any() else int(diff.to_numpy().argmax())
        rows.append(
            {
                "table": name,
                "number": column,
                "interval": f"{interval[0]} .. {interval[1]}" if interval else "none in its table",
                "cells": int(diff.notna().sum()),
                "largest |bf16 - fp32|": round(float(diff.max()), 4),
                "median |bf16 - fp32|": round(float(diff.median()), 4),
                "at the worst cell: |diff| / interval width": round(float(ratio.iloc[worst]), 3)
                if pd.notna(ratio.iloc[worst])
                else None,
                "within a tenth": bool(ratio.dropna().le(TARGET).all()) if interval else None,
            }
        )
    return rows


RUN_TABLES = ("95_culture_eval", "97_distributions")  # stages whose own tables hold headline numbers
MAX_ROWS = 5000  # per-item tables (answers, per-question distances) are summarised by the tables above them


def tables_of(root: Path) -> dict[str, Path]:
    """The summary tables and the CultureSPA and distributional stages' own tables of one tour."""
    found = {path.stem: path for path in sorted((root / "summary").glob("*.csv"))}
    for stage in RUN_TABLES:
        for path in sorted(root.glob(f"*/*/{stage}/*.csv")):
            found[f"{stage}/{path.stem}"] = path
    return found


def compare(fp32_root: Path, bf16_root: Path) -> pd.DataFrame:
    """Every table's numbers, fp32 against bf16, each beside its interval where its table has one."""
    rows, bf16_tables = [], tables_of(bf16_root)
    for name, path in tables_of(fp32_root).items():
        if name in bf16_tables:
            fp32, bf16 = pd.read_csv(path), pd.read_csv(bf16_tables[name])
            if len(fp32) <= MAX_ROWS:
                rows += compare_table(name, fp32, bf16)
    return pd.DataFrame(rows)


def compare_training(fp32_root: Path, bf16_root: Path, model: str = "gemma3-270m") -> pd.DataFrame:
    """Stage 90's adapters in both precisions: steps, mean training loss and seconds (training.csv)."""
    frames = []
    for dtype, root in (("fp32", fp32_root), ("bf16", bf16_root)):
        folder = root / model / "en" / "90_lora_sft"
        if not (folder / TRAINING.file).exists():
            return pd.DataFrame()
        frames.append(TRAINING.read(folder)[["adapter", "steps", "train_loss", "seconds"]].add_suffix(f" {dtype}"))
    both = frames[0].merge(frames[1], left_on="adapter fp32", right_on="adapter bf16")
    both["|loss bf16 - loss fp32|"] = (both["train_loss bf16"] - both["train_loss fp32"]).abs().round(4)
    return both.drop(columns=["adapter bf16"]).rename(columns={"adapter fp32": "adapter"}).round(4)


def run_tour(dtype: str) -> None:
    """The tour (make quick's job) in one precision, into outputs/precision/<dtype>, and its report."""
    env = {**os.environ, "CULTUREALIGN_OUTPUTS": str(paths.outputs() / "precision" / dtype)}
    job = [sys.executable, "-m", "culturealign.stages", "all", "--scale", "quick", "--jobs", "2", "--dtype", dtype]
    subprocess.run(job, env=env, check=True)
    subprocess.run([sys.executable, "-m", "culturealign.results", "report"], env=env, check=True)


def tour_times(root: Path) -> dict[str, float]:
    """The tour's wall time (first start to last finish) and its runs' summed time, from the manifests."""
    manifests, _ = read_manifests(root)
    started = pd.to_datetime([m["started"] for m in manifests], utc=True, format="ISO8601")
    finished = pd.to_datetime([m["finished"] for m in manifests if m.get("finished")], utc=True, format="ISO8601")
    summed = sum(s for s in map(wall_seconds, manifests) if s)
    return {"wall": (finished.max() - started.min()).total_seconds(), "summed": summed, "runs": len(manifests)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare-only", action="store_true", help="compare two finished tours, run nothing")
    parser.add_argument("--only", choices=DTYPES, default=None, help="run the tour in this precision only")
    args = parser.parse_args()
    cpu = cpu_model()
    print(f"CPU: {cpu}")
    for dtype in [] if args.compare_only else [args.only] if args.only else DTYPES:
        run_tour(dtype)
    roots = {dtype: paths.outputs() / "precision" / dtype for dtype in DTYPES}
    table = compare(roots["float32"], roots["bfloat16"])
    print(table.to_string(index=False))
    tables = [
        {
            "caption": "The tour in bfloat16 against float32 on the same machine: every number of its tables (an "
            "interval's ends with their number), its largest difference over the table's cells and, where the "
            f"table prints an interval beside it, that difference as a share of the interval's width (target: at "
            f"most {TARGET})",
            "rows": table.to_dict("records"),
        }
    ]
    training = compare_training(roots["float32"], roots["bfloat16"])
    if not training.empty:
        print(training.to_string(index=False))
        tables.append(
            {
                "caption": "Stage 90's LoRA adapters on the tour, trained in float32 and with bf16 autocast: optimizer "
                "steps, mean training loss over those steps and seconds (the adapters' scores are in the "
                "table above, culturespa_scores and expected_scores)",
                "rows": training.to_dict("records"),
            }
        )
    times = {d: tour_times(r) for d, r in roots.items()}
    tables.append(
        {
            "caption": "The tour's time in each precision, from its run manifests (two stages at once; "
            "a shared machine's contention is in both)",
            "rows": [
                {
                    "precision": d,
                    "runs": t["runs"],
                    "wall time (s)": round(t["wall"]),
                    "summed run time (s)": round(t["summed"]),
                }
                for d, t in times.items()
            ],
        }
    )
    moved = table[table["within a tenth"].eq(False)] if not table.empty else table
    notes = [
        f"{len(table)} numbers compared, {int(table['within a tenth'].notna().sum()) if len(table) else 0} of them "
        f"with an interval; {len(moved)} moved by more than a tenth of their interval's width"
        + (f": {', '.join(moved['table'] + '.' + moved['number'])}" if len(moved) else ""),
    ]
    write_bench("precision", "bfloat16 against float32: the tour's numbers", tables, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
