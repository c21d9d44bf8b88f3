"""culturealign: measure and improve how well language models reflect a country's values.

Reproduces Self-Alignment (Choenni & Shutova, 2024) and CultureSPA (Xu et al., 2024).
Modules are layered (see ../shared/DESIGN.md): base (paths, metrics) -> foundations (wvs,
models, params, plots) -> data (probes, runs) -> mechanisms (scoring, prompts, demos, report)
-> pipelines (culturespa, train, stages).
"""

__version__ = "0.1.0"
