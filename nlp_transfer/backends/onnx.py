"""The ONNX backend: a graph exported by `nlp-transfer export --format onnx`, run by onnxruntime (open only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import NLPTransferError
from ..runtime import Runtime
from .base import Backend, register

ONNX_KINDS = ("classifier", "tagger", "encoder")  # what an export folder holds (nlp_transfer.export.onnx_export)


@register("onnx")
class OnnxBackend(Backend):
    title = "ONNX export"

    def load(self, folder: Path, sidecar: dict[str, Any], runtime: Runtime, trust_remote_code: bool = False,
             variant: str | None = None):
        """`OnnxClassifier`, `OnnxTagger` or `OnnxEncoder` by the kind the export holds; ``variant`` picks its
        ``fp32`` or ``int8`` graph (default: the one the export was asked for)."""
        from ..predictors import OnnxClassifier, OnnxEncoder, OnnxTagger

        kind = (sidecar.get("onnx") or {}).get("kind")
        classes = {"classifier": OnnxClassifier, "tagger": OnnxTagger, "encoder": OnnxEncoder}
        if kind not in classes:
            raise NLPTransferError(f"{folder}: nlp_transfer.json names ONNX kind {kind!r}, not one of "
                                   f"{', '.join(ONNX_KINDS)}")
        return classes[kind](Path(folder), sidecar, variant, runtime.device)
