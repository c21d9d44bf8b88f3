"""What an in-process engine ran and where its time went: counters and a phase clock that the
engine and its speed-ups report to, read by tests and benchmarks, never by the computation."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Iterator


class PhaseClock:
    """Seconds spent in each phase of the engine's work, exclusive: a phase entered inside another
    pauses the outer one, so the phases and the rest add up to the wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._since = 0.0

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        self._switch()
        self._stack.append(phase)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def _switch(self) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] = self.seconds.get(self._stack[-1], 0.0) + now - self._since
        self._since = now


@dataclasses.dataclass
class EngineStats:
    """Token and position counts of an engine's forwards, and its phase clock."""

    prompt_tokens_run: int = 0  # prompt tokens through the model body
    prompt_positions_run: int = 0  # the same with the padding a batch computes too
    path_tokens_run: int = 0  # continuation tokens through the model body
    path_positions_run: int = 0  # the same with padding
    output_positions_run: int = 0  # continuation positions that went through the output layer
    output_positions_needed: int = 0  # distinct continuation positions the callers read
    clock: PhaseClock = dataclasses.field(default_factory=PhaseClock)

    def prompts_ran(self, tokens: int, positions: int) -> None:
        """Count a prompt forward: its real tokens and its padded positions."""
        self.prompt_tokens_run += tokens
        self.prompt_positions_run += positions

    def paths_ran(self, tokens: int, positions: int, outputs: int = 0) -> None:
        """Count a continuation forward: real tokens, padded positions, output-layer positions."""
        self.path_tokens_run += tokens
        self.path_positions_run += positions
        self.output_positions_run += outputs
