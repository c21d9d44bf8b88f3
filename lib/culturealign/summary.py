"""Cross-run summary of Self-Alignment: Table 1, the paper's figures, and the added statistics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy import stats

from . import metrics, paths, plots


def collect(name: str, stage: str) -> pd.DataFrame:
    """One artifact table from every finished run of a stage, with model and lang columns."""
    frames = []
    for manifest in paths.outputs().glob(f"*/*/{stage}/manifest.json"):
        folder = manifest.parent
        table = folder / name
        if table.exists() and '"status": "done"' in manifest.read_text():
            frame = pd.read_csv(table)
            frame.insert(0, "lang", folder.parent.name)
            frame.insert(0, "model", folder.parent.parent.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 (model, lang, strategy, n_misaligned, improved, same, decreased: %),
    with bootstrap interval of % improved and a sign test beside it."""
    from .selfalign import table1_rows

    parts = [table1_rows(group.drop(columns=["model", "lang"]), model, lang)
             for (model, lang), group in results.groupby(["model", "lang"])]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def misaligned_matrix(zero: pd.DataFrame) -> pd.DataFrame:
    """% misaligned probes, model x language."""
    return zero.groupby(["model", "lang"])["misaligned"].mean().mul(100).unstack("lang")


def soft_alignment(zero: pd.DataFrame, results: pd.DataFrame, strategy: str = "chrf_all") -> pd.DataFrame:
    """Distance between the model's two-option distribution and the country's human shares,
    zero-shot vs self-aligned, on the misaligned probes the strategy served (paired Wilcoxon)."""
    served = results[(results["strategy"] == strategy) & results["p_a_after"].notna()]
    rows = []
    for (model, lang), group in served.groupby(["model", "lang"]):
        before = [metrics.soft_distance(p, h) for p, h in zip(group["p_a_before"], group["human_a"])]
        after = [metrics.soft_distance(p, h) for p, h in zip(group["p_a_after"], group["human_a"])]
        every = zero[(zero["model"] == model) & (zero["lang"] == lang)]
        test = stats.wilcoxon(before, after) if len(group) > 1 and any(b != a for b, a in zip(before, after)) else None
        rows.append({"model": model, "lang": lang, "strategy": strategy, "n": len(group),
                     "all_probes_zero_shot": float(every.apply(lambda r: metrics.soft_distance(r["p_a"], r["human_a"]), axis=1).mean()),
                     "zero_shot": float(pd.Series(before).mean()), "self_aligned": float(pd.Series(after).mean()),
                     "wilcoxon_p": float(test.pvalue) if test else float("nan")})
    return pd.DataFrame(rows)


def figures(t1: pd.DataFrame, results: pd.DataFrame, zero: pd.DataFrame, soft: pd.DataFrame, out: Path) -> dict[str, list[Path]]:
    """The paper's Figures 2-8 and 10, and the soft-alignment figure, as PNG and PDF."""
    improved = results[results["outcome"] == "improved"]
    chrf = results[(results["strategy"] == "chrf_all") & results["outcome"].notna()]
    misaligned = zero[zero["misaligned"]].assign(errors=lambda f: 10 - f["count"])
    made = {
        "fig2_improved_by_strategy": plots.bars(t1, "strategy", "improved", "lang", "Misaligned probes improved by self-alignment", "% improved"),
        "fig3_error_reduction_by_strategy": plots.boxes(improved, "strategy", "error_reduction", "Error-rate reduction of improved probes", "(d_orig - d_corr) / d_orig"),
        "fig4_error_reduction_by_model": plots.boxes(improved, "model", "error_reduction", "Error-rate reduction per model", "(d_orig - d_corr) / d_orig"),
        "fig5_improved_by_model": plots.bars(t1, "model", "improved", "strategy", "Misaligned probes improved, per model", "% improved"),
        "fig6_error_sizes": plots.histogram(misaligned, "errors", "lang", "Size of zero-shot errors", "misaligned responses out of 10 (d_orig)"),
        "fig7_misaligned_heatmap": plots.heatmap(misaligned_matrix(zero), "Zero-shot misaligned probes", "% misaligned"),
        "fig8_improved_by_category": plots.bars(results[results["outcome"].notna()].assign(improved=lambda f: (f["outcome"] == "improved") * 100.0),
                                                "category", "improved", "strategy", "Improved probes per WVS category", "% improved"),
        "fig10_improved_by_category_language": plots.heatmap(
            chrf.assign(improved=(chrf["outcome"] == "improved") * 100.0).pivot_table(index="category", columns="lang", values="improved"),
            "Improved probes per category and language (chrF++ across)", "% improved"),
    }
    if not soft.empty:
        long = soft.melt(id_vars=["model", "lang"], value_vars=["zero_shot", "self_aligned"], var_name="setting", value_name="distance")
        made["fig_soft_alignment"] = plots.bars(long, "lang", "distance", "setting",
                                                "Distance to human answer shares (misaligned probes)", "total variation distance",
                                                hue_order=["zero_shot", "self_aligned"])
    return {name: plots.save(fig, out / name) for name, fig in made.items()}
