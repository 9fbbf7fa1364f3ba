"""Opening a trained folder: `load_model` reads its sidecar and lets the backend that wrote it load the predictor.

    from nlp_transfer import load_model
    model = load_model("runs/sst2-demo")
    model.predict(["a gorgeous, witty film"])
    # [{'label': 'positive', 'score': 0.98, 'scores': {'negative': 0.02, 'positive': 0.98}}]

The predictors themselves are in `nlp_transfer.predictors`; `export_merged` folds a LoRA adapter into its base model.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .backends import get_backend
from .calibration import Calibration
from .errors import NLPTransferError, NoTaskHeadError
from .io import check_folder_target, move_contents
from .runtime import Runtime
from .sidecar import SIDECAR, read_sidecar, sidecar_path, write_sidecar
from .tasks.classification import LabelPredictor

__all__ = ["NoTaskHeadError", "SIDECAR", "export_merged", "load_model", "read_sidecar"]


def load_model(path: str | Path, device: str | None = "auto", trust_remote_code: bool = False,
               precision: str = "float32", variant: str | None = None):
    """Load a directory written by ``nlp-transfer train``: a `TextClassifier` or a `TokenTagger` (or a
    probe, a static baseline, an ONNX export). A folder without a task head (a masked-LM run, a bare encoder) raises
    NLPTransferError. A classifier applies the folder's calibration.json (temperature, tuned thresholds);
    ``predict(..., calibrated=False)`` and ``logits`` give the raw scores.

    ``device``: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda[:N]`` or ``mps``; ``precision``:
    ``float32``, or ``bfloat16`` / ``float16`` autocast on an accelerator. An ONNX export (``nlp-transfer export
    --format onnx``) loads an onnxruntime predictor with the same API; ``variant`` picks its ``fp32`` or ``int8``
    graph (default: the one the export was asked for)."""
    sidecar = read_sidecar(path)
    backend = get_backend(sidecar["backend"], f"{sidecar_path(path)}: backend")
    if variant is not None and backend.name != "onnx":
        raise NLPTransferError(f"{path}: variant={variant!r} picks the graph of an ONNX export; this folder is not one")
    runtime = Runtime.resolve(device, precision)
    model = backend.load(Path(path), sidecar, runtime, trust_remote_code, variant)
    if isinstance(model, LabelPredictor):  # the temperature and thresholds fitted on validation, if any
        model.calibration = Calibration.read(path)
    return model


def export_merged(path: str | Path, output: str | Path) -> Path:
    """Fold a LoRA run's adapter into its base model and write a plain transformers folder (atomically)."""
    output = check_folder_target(output, "output")
    if Path(output).resolve() == Path(path).resolve():
        raise NLPTransferError(f"output {output}: is the run folder itself; write the merged model to another folder")
    model = load_model(path)
    inner = model.model
    if not hasattr(inner, "merge_and_unload"):
        raise NLPTransferError(f"{path}: not a LoRA run (no adapter to merge); it already loads with plain transformers")
    merged = inner.merge_and_unload()
    output = Path(output)
    staging = output.parent / f".{output.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    model.tokenizer.save_pretrained(staging)
    sidecar = {k: v for k, v in read_sidecar(path).items() if k not in ("adapter", "format", "backend",
                                                                          "nlp_transfer_version")}
    write_sidecar(staging, "trainer", sidecar)
    for name in ("metrics.json", "recipe.yaml", "README.md"):
        if (Path(path) / name).is_file():
            shutil.copy(Path(path) / name, staging / name)
    move_contents(staging, output)
    return output
