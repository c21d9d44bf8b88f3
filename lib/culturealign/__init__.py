"""culturealign: measure and improve how well language models reflect a country's values.

Reproduces Self-Alignment (Choenni & Shutova, 2024) and CultureSPA (Xu et al., 2024). Modules
are layered, each importing only from the layers below it: pyproject.toml declares the layers
(`[tool.importlinter]`) and `make lint` checks them.
"""

__version__ = "0.1.0"
