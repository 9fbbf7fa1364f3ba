"""What a backend is given to train (`Job`) and what it hands to the end of the run (`Fitted`)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runtime import Runtime


@dataclass
class Job:
    """Everything a backend's `Backend.fit` trains from: the resolved recipe, its card, the data read and checked,
    the eval sets (name -> (card, split)), the run folder plan (`nlp_transfer.rundir`) and where to run."""

    recipe: Any
    card: Any
    data: Any  # data.readers.Data: splits as datasets, label names, problem type
    eval_cards: dict[str, tuple[Any, str]]
    run: Any  # rundir.RunPlan: the backend writes into run.work
    runtime: Runtime | None  # train --device/--precision; None: each backend's default (a GPU when there is one)
    on_start: Callable[[], None] = lambda: None  # begins the run folder (`rundir.begin`)
    callbacks: list = field(default_factory=list)  # more TrainerCallbacks (the Trainer backend only)
    started: bool = False

    def start(self) -> None:
        """Begin the run folder; the backend calls it once every check has passed, on the process that writes."""
        self.on_start()
        self.started = True


@dataclass
class Fitted:
    """What a backend hands to the end of the run (`nlp_transfer.outputs.finish`) after it staged the model files
    and the sidecar in ``OUT/.final-staging``."""

    metrics: dict[str, Any]  # the run record so far (`record.run_record`)
    readme: Callable[[dict[str, Any]], str]  # the model card, from the final metrics
    runtime: Runtime  # where final scoring runs (the Trainer's device and precision)
    predictions: Iterable[dict[str, Any]] | None = None  # the evaluation split's rows with their predictions
    calibration_rows: tuple[list, list] | None = None  # evaluation (texts, gold) that calibration is fitted on
    after: Callable[[Path], None] | None = None  # final tidying of the finished folder (e.g. dropping checkpoints)
    writes: bool = True  # False on the processes of a distributed run that do not write (all but the main one)
