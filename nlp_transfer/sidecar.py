"""The sidecar: ``nlp_transfer.json`` in a trained folder says which backend wrote it and what loading it needs.

Written by `write_sidecar` and read by `read_sidecar`, nowhere else. Its ``backend`` key is what `load_model`
dispatches on (`nlp_transfer.backends`); ``format`` is raised when a key changes meaning. Folders written before
the format existed are read into the same shape here, so no caller guesses from file names:
- ``static.json`` and no ``nlp_transfer.json``: a static-embedding baseline;
- ``nlp_transfer.json`` without ``backend``: the Trainer, or the scikit-learn probe when its strategy is
  ``feature-extraction``;
- no sidecar at all: a model from elsewhere (a Hub id or a plain transformers folder), opened by the Trainer backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .checks import check_value
from .errors import NLPTransferError
from .io import read_run_json, write_json_atomic
from .version import __version__

SIDECAR = "nlp_transfer.json"
FORMAT = 2  # 1: the three layouts before one format (read by `_legacy_backend`)
LEGACY_STATIC = "static.json"  # a static run's sidecar before format 2

# The values prediction uses, checked like a recipe's (types, ranges) when a folder is read: a file edited by hand or
# copied from another run fails here with the file and key, not deep inside the model.
VALUES: dict[str, tuple[Any, dict[str, Any]]] = {
    "backend": (str, {}),
    "task": (str, {}),  # which tasks load is the backend's to say (an ONNX encoder export says "embedding")
    "max_length": (int, {"low": 8}),
    "stride": (int, {"low": 0}),
    "threshold": (float, {"low": 0, "high": 1, "low_open": True, "high_open": True}),
    "strict": (bool, {}),
    "label_names": (list[str], {}),
    "problem_type": (str, {}),  # single_label, multi_label, regression; NER data says "token"
}
FIX = "restore the value the run was trained with (see its recipe.yaml), or train the run again"


def write_sidecar(folder: str | Path, backend: str, values: dict[str, Any]) -> Path:
    """Write ``folder/nlp_transfer.json`` (atomically): the format, the backend, ``values``, the package version."""
    path = Path(folder) / SIDECAR
    write_json_atomic(path, {"format": FORMAT, "backend": backend, **values, "nlp_transfer_version": __version__})
    return path


def sidecar_path(folder: str | Path) -> Path:
    """The file a folder's sidecar is read from (the legacy static.json when that is all it has)."""
    folder = Path(folder)
    if not (folder / SIDECAR).is_file() and (folder / LEGACY_STATIC).is_file():
        return folder / LEGACY_STATIC
    return folder / SIDECAR


def read_sidecar(folder: str | Path) -> dict[str, Any]:
    """The folder's sidecar with ``backend`` and ``format`` always set (older layouts read into this shape), each
    known value checked; a one-line error names the file and key when it is corrupt or out of range."""
    path = sidecar_path(folder)
    if not path.is_file():
        return {"backend": "trainer", "format": 0}  # a model from elsewhere: plain transformers files
    sidecar = read_run_json(path)
    if "format" not in sidecar or "backend" not in sidecar:
        sidecar = {**sidecar, "backend": sidecar.get("backend") or _legacy_backend(path, sidecar),
                   "format": sidecar.get("format", 1)}
    for key, (hint, limits) in VALUES.items():
        if sidecar.get(key) is not None:
            try:
                sidecar[key] = check_value(sidecar[key], hint, limits, key, str(path))
            except NLPTransferError as exc:
                raise NLPTransferError(f"{exc}; {FIX}") from None
    return sidecar


def _legacy_backend(path: Path, sidecar: dict[str, Any]) -> str:
    """Which backend wrote a format-1 folder (the only place that reads the old layouts)."""
    if path.name == LEGACY_STATIC:
        return "static"
    if sidecar.get("strategy") == "feature-extraction":  # probes before the backend key existed
        return "probe"
    return "trainer"


def check_positions(folder: str | Path, key: str, max_length: int, limit: int | None) -> None:
    """``max_length`` (the sidecar's ``key``) fits ``limit``, the model's position embeddings; else one line."""
    if limit is not None and max_length > limit:
        raise NLPTransferError(f"{Path(folder) / SIDECAR}: {key} {max_length} is longer than the model reads ({limit} "
                               f"positions); set {key} to at most {limit} there, or train the run again")
