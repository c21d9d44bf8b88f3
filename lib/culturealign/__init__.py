"""culturealign: measure and improve how well language models reflect a country's values.

Reproduces Self-Alignment (Choenni & Shutova, 2024) and CultureSPA (Xu et al., 2024). Modules
are layered, each importing only from the layers below it (see ../shared/DESIGN.md):

- pipelines: selfalign, selfalign_summary (Self-Alignment); culturespa, train, culturespa_eval
  (CultureSPA); stages (the run scheduler), stage (a notebook's opening call); report, results
  (the report, RESULTS.md, results/)
- mechanisms: scoring, prompts, demos, plots
- engines: engine (protocol, in-process transformers, prefix cache), openai_engine, api, serve
- data: probes, wvs (figure queries), runs (folders, manifests, caches); wvs_build (`make wvs`)
- foundations: models, params, tokens, metrics, paths
"""

__version__ = "0.1.0"
