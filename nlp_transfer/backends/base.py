"""The backend interface and its registry (see the package docstring)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..errors import NLPTransferError, did_you_mean
from ..jobs import Fitted, Job
from ..runtime import Runtime

__all__ = ["BACKENDS", "Backend", "Fitted", "Job", "get_backend", "register"]

BACKENDS: dict[str, Backend] = {}  # name -> the backend object, in registration order


def register(name: str):
    """Class decorator: make a `Backend` subclass the backend ``name`` (one instance, kept in BACKENDS)."""
    def add(cls: type[Backend]) -> type[Backend]:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"backend '{name}': register a Backend subclass, not {cls!r}")
        if name in BACKENDS and type(BACKENDS[name]) is not cls:
            raise ValueError(f"backend '{name}' is already registered ({type(BACKENDS[name]).__qualname__})")
        cls.name = name
        BACKENDS[name] = cls()
        return cls
    return add


def get_backend(name: str, where: str = "backend") -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise NLPTransferError(f"{where} '{name}' is not one of {', '.join(BACKENDS)}"
                               f"{did_you_mean(name, BACKENDS)}") from None


class Backend:
    """One way of training a recipe and opening what it wrote. Subclasses set the class facts and implement `fit`
    and `load`; everything else (recipe, card, data, run folder, final scoring) is shared."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # for messages, e.g. "the scikit-learn probe"
    resumable: ClassVar[bool] = False  # continues from Trainer checkpoints (resume=true)
    distributed: ClassVar[bool] = False  # runs under accelerate launch / torchrun
    needs_eval: ClassVar[str | None] = None  # why it needs the evaluation split (it selects on it), else None

    def check(self, recipe, card) -> None:
        """Refuse what this backend cannot train, before any data is read or anything written (model, settings)."""

    def model_name(self, recipe) -> str:
        """What the run record calls the model this recipe trains from."""
        return recipe.model

    def fit(self, job: Job) -> Fitted:
        """Call ``job.start()`` once every check has passed, then train, and stage the model files and the sidecar
        in ``job.run.work/.final-staging`` (`outputs.staging_folder`)."""
        raise NLPTransferError(f"the {self.title or self.name} backend does not train recipes")

    def load(self, folder: Path, sidecar: dict[str, Any], runtime: Runtime, trust_remote_code: bool = False,
             variant: str | None = None):
        """The predictor of a folder this backend wrote (``sidecar``: its `nlp_transfer.sidecar.read_sidecar`)."""
        raise NotImplementedError
