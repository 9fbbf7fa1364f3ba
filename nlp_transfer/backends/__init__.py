"""Backends: what trains a recipe and what opens the folder it wrote, one registered class per file.

    trainer  transformers.Trainer: fine-tuning, LoRA, masked-LM (the recipe's default)
    probe    frozen encoder features + a scikit-learn linear model (strategy feature-extraction / contrastive)
    static   GloVe / word2vec / fastText baselines (a recipe with static:)
    onnx     an exported graph run by onnxruntime (opened only; `nlp-transfer export` writes it)

`nlp_transfer.training.train` looks up ``BACKENDS[recipe.backend]`` and `nlp_transfer.load_model` looks up the
sidecar's ``backend`` (`nlp_transfer.sidecar`). Adding a backend is one new module here with a class registered by
``@register("name")``. Importing this package is cheap: each backend imports torch and friends when it runs.
"""
from __future__ import annotations

from .base import BACKENDS, Backend, Fitted, Job, get_backend, register
from . import trainer, probe, static, onnx  # noqa: E402,F401,I001  (each registers itself, in this order)

__all__ = ["BACKENDS", "Backend", "Fitted", "Job", "get_backend", "register"]
