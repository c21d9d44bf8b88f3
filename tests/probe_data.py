"""Small labelled probe sets that several test modules build their cases on."""

import numpy as np
import pandas as pd


def toy_probes(labels: str = "ababababa") -> pd.DataFrame:
    """9 labelled probes: 6 in category A, 3 in B (too few for within-category strategies)."""
    templates = [
        "Religion is _ to me.",
        "Religion is _ for me.",
        "God is _ to me.",
        "Work is _ to me.",
        "Family is _.",
        "Friends are _ to me.",
        "I _ the police.",
        "I _ the army.",
        "I _ the courts.",
    ]
    frame = pd.DataFrame(
        {
            "probe_id": [f"p{i}" for i in range(9)],
            "qid": [f"Q{i}" for i in range(9)],
            "category": ["A"] * 6 + ["B"] * 3,
            "template": templates,
            "option_a": ["important"] * 6 + ["trust"] * 3,
            "option_b": ["unimportant"] * 6 + ["distrust"] * 3,
            "label": list(labels),
            "human_a": np.linspace(0.2, 0.8, 9),
        }
    )
    frame["majority_option"] = np.where(frame["label"] == "a", frame["option_a"], frame["option_b"])
    return frame
