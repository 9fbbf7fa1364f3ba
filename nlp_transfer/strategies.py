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
    if name in ("full", "gradual", "lora"):  # gradual: its callback does it; lora: peft freezes the base
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
                     decay_names: set[str], include_frozen: bool = False) -> list[dict]:
    """Optimizer groups: layer-wise lr (``lr * decay**depth``) when ``decay`` is set; weight decay only on
    ``decay_names`` (Trainer's choice: not on biases and LayerNorm weights). Frozen parameters are left out
    unless ``include_frozen`` (gradual unfreezing opens them later)."""
    depth = depth_of_parameters(model) if decay is not None else {}
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad and not include_frozen:
            continue
        level = depth.get(id(parameter), 0)
        no_decay = name not in decay_names
        key = (level, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": learning_rate * (decay ** level if decay is not None else 1.0),
                           "weight_decay": 0.0 if no_decay else weight_decay, "depth": level}
        groups[key]["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def unfreeze_order(model) -> list[torch.nn.Module]:
    """Layer groups in the order gradual unfreezing opens them: top encoder layer first, embeddings last."""
    mapped = layer_map(model)
    return list(reversed(mapped.layers)) + [mapped.embeddings]


def make_gradual_unfreezing(every):
    """A TrainerCallback: the head (and pooler) train from the start; one more layer group from the top is
    unfrozen every ``every`` optimizer steps, or at every epoch start with ``every: epoch``.

    All parameters are in the optimizer from the start (see `TaskTrainer.create_optimizer`); while frozen they
    have no gradient, so AdamW leaves them, and their moments, untouched until they open."""
    from transformers import TrainerCallback

    if every != "epoch" and not (isinstance(every, int) and every > 0):
        raise NLPTransferError(f"strategy gradual: every must be a positive number of steps or 'epoch', got {every!r}")

    class GradualUnfreezing(TrainerCallback):
        def __init__(self):
            self.opened = 0
            self.events: list[tuple[int, int]] = []  # (global step, groups open) whenever a group opens

        def _open(self, model, count: int, step: int) -> None:
            groups = unfreeze_order(model)
            while self.opened < min(count, len(groups)):
                for parameter in groups[self.opened].parameters():
                    parameter.requires_grad = True
                self.opened += 1
                self.events.append((step, self.opened))

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            mapped = layer_map(model)
            pooler = _parameter_ids(getattr(mapped.base, "pooler", None) or torch.nn.Module())
            for parameter in mapped.base.parameters():
                parameter.requires_grad = id(parameter) in pooler
            self.opened = 0
            if every != "epoch":  # resuming: open what was open at this step
                self._open(model, state.global_step // every, state.global_step)

        def on_epoch_begin(self, args, state, control, model=None, **kwargs):
            if every == "epoch":
                self._open(model, int(round(state.epoch or 0)), state.global_step)

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if every != "epoch" and state.global_step and state.global_step % every == 0:
                self._open(model, state.global_step // every, state.global_step)

    return GradualUnfreezing()


def apply_lora(model, strategy, task: str):
    """Wrap ``model`` with LoRA adapters (peft). Target modules default to peft's choice for the architecture
    (e.g. query/value for BERT-family); the task head is trained fully and saved with the adapter."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise NLPTransferError("strategy lora needs the peft package; install it with `pip install peft`") from None
    task_type = TaskType.TOKEN_CLS if task == "token-classification" else TaskType.SEQ_CLS
    config = LoraConfig(task_type=task_type, r=strategy.r, lora_alpha=strategy.alpha, lora_dropout=strategy.dropout,
                        target_modules=strategy.target_modules)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        kind = getattr(model.config, "model_type", type(model).__name__)
        raise NLPTransferError(
            f"LoRA cannot pick target modules for a '{kind}' model ({str(exc).splitlines()[0]}); set "
            f"strategy.target_modules, e.g. [query, value]"
        ) from None
