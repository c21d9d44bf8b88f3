"""What lm-evaluation-harness calls while it runs the culturealign tasks: their documents, each
document's numbers from its option log-likelihoods, and the distances to the human distribution.

`make harness-tasks` copies this file unchanged next to the task files as `utils.py`, so it
imports nothing from culturealign and the task folder runs wherever the harness is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------ distances


def as_distribution(values: Sequence[float]) -> np.ndarray:
    """Non-negative weights as a probability vector (refuses an empty or all-zero one)."""
    p = np.clip(np.asarray(values, dtype=float), 0.0, None)
    total = p.sum()
    if p.size == 0 or total <= 0:
        raise ValueError(f"not a distribution: {list(values)!r} (needs a positive total)")
    return p / total


def w1_ordinal(p: Sequence[float], q: Sequence[float]) -> float:
    """Wasserstein-1 distance between two distributions on the same ordered scale of k points,
    divided by k - 1, so 0 is identical and 1 is all mass at opposite ends."""
    p, q = as_distribution(p), as_distribution(q)
    if p.size != q.size:
        raise ValueError(f"distributions on scales of {p.size} and {q.size} points")
    if p.size < 2:
        return 0.0
    return float(np.abs(np.cumsum(p - q)[:-1]).sum() / (p.size - 1))


def jsd(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance in base 2, the square root of the divergence in bits (scipy's
    `jensenshannon(p, q, base=2)`, the distributional stage's JSD): 0 for identical
    distributions, 1 for disjoint."""
    p, q = as_distribution(p), as_distribution(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Total variation distance: half the L1 distance, the largest difference in any event's probability."""
    p, q = as_distribution(p), as_distribution(q)
    return float(np.abs(p - q).sum() / 2)


DISTANCES = {"w1": w1_ordinal, "jsd": jsd, "tv": total_variation}


# ------------------------------------------------------------------------------ per-sample numbers


def option_probs(loglikelihoods: Sequence[float]) -> list[float]:
    """The options' probabilities normalised over the options: the softmax of their log-likelihoods."""
    ll = np.asarray(loglikelihoods, dtype=float)
    weights = np.exp(ll - ll.max())
    return (weights / weights.sum()).tolist()


def loglikelihoods(results: Sequence[Any]) -> list[float]:
    """The log-likelihood of each choice from the harness's results ((loglikelihood, is_greedy) pairs)."""
    return [float(r[0]) if isinstance(r, (tuple, list)) else float(r) for r in results]


def process_selfalign(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, float]:
    """One prompt of a Self-Alignment probe (one option order): the probability of the country's
    majority option, normalised over the two options, and whether it is the more probable one."""
    p = option_probs(loglikelihoods(results))[int(doc["target"])]
    return {"p_majority": p, "aligned": float(p > 0.5)}


def process_wvs(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, float]:
    """One WVS question under a country's persona: the distances of the model's answer distribution
    (normalised over the scale's options) to the country's human distribution, and the same
    distances of the all-countries average (the floor a model reaches without knowing the country)."""
    model = option_probs(loglikelihoods(results))
    human, average = doc["human"], doc["average"]
    out = {name: fn(model, human) for name, fn in DISTANCES.items()}
    out.update({f"{name}_floor": fn(average, human) for name, fn in DISTANCES.items()})
    return out


# ------------------------------------------------------------------------------------- documents


def read_docs(file: str | Path) -> list[dict[str, Any]]:
    """The documents of a task: one JSON object per line, in a file beside this one (or a path)."""
    path = Path(file) if Path(file).is_absolute() else HERE / file
    if not path.exists():
        raise FileNotFoundError(f"{path}: the task's documents are missing; rebuild them with `make harness-tasks`")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_docs(file: str, **_: Any) -> dict[str, Any]:
    """The harness's `custom_dataset`: the task's documents as a test split (metadata ignored)."""
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(read_docs(file))})
