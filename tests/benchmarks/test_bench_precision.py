"""The precision benchmark's comparison of two tours' summary tables (no model runs here)."""

import pandas as pd
import pytest

from benchmarks import bench_precision


def table1(improved: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lang": ["de", "en"],
            "strategy": ["random", "random"],
            "n": [20, 20],
            "improved": improved,
            "improved_run_low": [40.0, 50.0],
            "improved_run_high": [80.0, 70.0],
            "mean_delta": [0.1, 0.2],
            "delta_ci_low": [0.0, 0.1],
            "delta_ci_high": [0.2, 0.3],
        }
    )


def test_each_number_is_matched_on_its_row_and_judged_against_its_own_interval():
    rows = {r["number"]: r for r in bench_precision.compare_table("table1", table1([60, 60]), table1([61, 63]))}
    improved = rows["improved"]
    assert improved["largest |bf16 - fp32|"] == 3 and improved["cells"] == 2
    assert improved["at the worst cell: |diff| / interval width"] == pytest.approx(3 / 20)  # en: range 50..70
    assert improved["within a tenth"] is False and improved["interval"] == "improved_run_low .. improved_run_high"
    assert rows["mean_delta"]["interval"] == "delta_ci_low .. delta_ci_high" and rows["mean_delta"]["within a tenth"]
    assert rows["n"]["interval"] == "none in its table" and rows["n"]["within a tenth"] is None


def test_rows_of_one_precision_only_are_not_compared():
    fp32, bf16 = table1([60, 60]), table1([60, 99]).iloc[:1]
    rows = {r["number"]: r for r in bench_precision.compare_table("table1", fp32, bf16)}
    assert rows["improved"]["cells"] == 1 and rows["improved"]["largest |bf16 - fp32|"] == 0


def test_a_long_table_is_matched_on_its_row_and_position():
    long = pd.DataFrame({"persona": ["A", "A", "B"], "id": "Q1", "position": [0, 1, 0], "value": [0.25, 0.75, 1.0]})
    rows = {
        r["number"]: r for r in bench_precision.compare_table("model__dist", long, long.assign(value=[0.3, 0.7, 1.0]))
    }
    assert list(rows) == ["value"] and rows["value"]["cells"] == 3
    assert rows["value"]["largest |bf16 - fp32|"] == pytest.approx(0.05)
