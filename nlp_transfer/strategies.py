"""Transfer strategies: which pretrained parameters train, and how fast.

- ``full``: everything trains (the default).
- ``last-n``: embeddings and the lower layers are frozen; the top ``n`` encoder layers and the head train.
- ``feature-extraction`` with ``probe: head``: the whole encoder is frozen, only the task head trains (in Trainer).
  (With the default ``probe: logistic`` it is the scikit-learn probe of `nlp_transfer.probe`.)
- ``lr_decay`` (combinable with any of them): layer-wise learning rates, ``lr * decay**depth`` where depth is 0 for the
  head and the top layer, 1 for the layer below, ..., and num_layers for the embeddings.

Layers are discovered without per-model code: the embeddings are the base model's ``embeddings`` module and the
encoder layers the base model's ``nn.ModuleList`` whose length is ``config.num_hidden_layers`` (BERT, RoBERTa,
XLM-R, DistilBERT, MPNet, ELECTRA...). ALBERT shares one layer's weights across depths, so it cannot be split by
layer; that and other unmapped architectures get a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import NLPTransferError


@dataclass
class LayerMap:
    embeddings: torch.nn.Module
    layers: list[torch.nn.Module]  # bottom to top
    base: torch.nn.Module


def layer_map(model) -> LayerMap:
    """Embeddings and encoder layers of a transformers model with a task head."""
    base = getattr(model, "base_model", model)
    count = getattr(model.config, "num_hidden_layers", None)
    embeddings = getattr(base, "embeddings", None)
    layers = None
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and count and len(module) == count:
            layers = list(module)
            break
    if embeddings is None or layers is None:
        kind = getattr(model.config, "model_type", type(model).__name__)
        raise NLPTransferError(
            f"cannot map the layers of a '{kind}' model (no embeddings module or no list of {count} layers; ALBERT-style "
            f"shared layers cannot be split); use strategy full or feature-extraction"
        )
    return LayerMap(embeddings, layers, base)


def _parameter_ids(module: torch.nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def apply_freezing(model, strategy) -> None:
    """Set requires_grad as the strategy says."""
    name = strategy.name
    if name == "full":
        return
    mapped = layer_map(model)
    if name == "feature-extraction":
        for parameter in mapped.base.parameters():
            parameter.requires_grad = False
        return
    if name == "last-n":
        n = strategy.n
        if not isinstance(n, int) or not 0 <= n <= len(mapped.layers):
            raise NLPTransferError(f"strategy last-n: n must be between 0 and {len(mapped.layers)} (the model's layers), got {n!r}")
        trainable = _parameter_ids(torch.nn.ModuleList(mapped.layers[len(mapped.layers) - n:]))
        for parameter in mapped.base.parameters():
            parameter.requires_grad = id(parameter) in trainable
        # pooler and other base-model parts above the layers (e.g. BERT's pooler) train with the head
        pooler = getattr(mapped.base, "pooler", None)
        if pooler is not None:
            for parameter in pooler.parameters():
                parameter.requires_grad = True
        return
    raise NLPTransferError(f"strategy '{name}' cannot be applied here")


def depth_of_parameters(model) -> dict[int, int]:
    """id(parameter) -> depth from the top: 0 for the head and the top layer, num_layers for the embeddings."""
    mapped = layer_map(model)
    total = len(mapped.layers)
    depth = {id(p): 0 for p in model.parameters()}  # head, pooler: depth 0
    for index, layer in enumerate(mapped.layers):
        for parameter in layer.parameters():
            depth[id(parameter)] = total - 1 - index
    for parameter in mapped.embeddings.parameters():
        depth[id(parameter)] = total
    return depth


def parameter_groups(model, learning_rate: float, weight_decay: float, decay: float | None,
                     decay_names: set[str]) -> list[dict]:
    """Optimizer groups of trainable parameters: layer-wise lr (``lr * decay**depth``) when ``decay`` is set;
    weight decay only on ``decay_names`` (Trainer's choice: not on biases and LayerNorm weights)."""
    depth = depth_of_parameters(model) if decay is not None else {}
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        level = depth.get(id(parameter), 0)
        no_decay = name not in decay_names
        key = (level, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": learning_rate * (decay ** level if decay is not None else 1.0),
                           "weight_decay": 0.0 if no_decay else weight_decay, "depth": level}
        groups[key]["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]
