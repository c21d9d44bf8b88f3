"""The opening of every stage notebook in one call: the run folder and manifest, then the model.

A notebook passes its name and `globals()`; its parameters cell says what to record (every name
it declares, nothing else) and whether the stage asks a model (it declares `model_config`). A
stage without a model reads and writes tables only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import models, params, precision, runs


def uses_model(stage: str) -> bool:
    """Whether a stage asks a model: its parameters cell declares `model_config`."""
    return "model_config" in params.parameter_names(stage)


def begin(stage: str, namespace: dict[str, Any], **load: Any) -> tuple[runs.Run, models.LoadedModel | None]:
    """Check the parameters (params.check_kernel_values), open the stage's run (runs.start_run,
    from the parameters in `namespace`) and, for a stage that asks a model, load it (keywords go to
    models.load_model, with the stage's batch_size) and record it in the manifest. Returns the run
    and the loaded model (None for a stage without one)."""
    params.check_kernel_values(stage, namespace)
    run = runs.start_run(stage, namespace)
    if not uses_model(stage):
        print(f"{stage}: model {run.model}, language {run.lang}; outputs in {run.dir}")
        return run, None
    spec = models.spec_for(run.model, namespace["model_config"])
    spec = dataclasses.replace(spec, dtype=precision.stage_dtype(spec.dtype, stage))
    if "batch_size" in namespace:
        load.setdefault("batch_size", namespace["batch_size"])
    lm = models.load_model(spec, **load)
    run.record_model(lm)
    print(f"{stage}: model {lm.spec.name} on {lm.device} in {lm.dtype}, language {run.lang}; outputs in {run.dir}")
    return run, lm
