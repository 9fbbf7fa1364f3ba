"""Transfer strategies, the torch side: which pretrained parameters train, and how fast.

The strategies themselves (their options, checks and descriptions) are registered, torch-free, in
`nlp_transfer.strategy_configs`; each one's ``apply`` calls the functions here.

- ``full``: everything trains (the default).
- ``last-n``: embeddings and the lower layers are frozen; the top ``n`` encoder layers and the head train.
- ``feature-extraction`` with ``probe: head``: the encoder is frozen; the task head and the pooler train (in
  Trainer).
  (With the default ``probe: logistic`` it is the scikit-learn probe of `nlp_transfer.probe`.)
- ``gradual``: the head first, then one more layer group from the top every ``every`` steps or epoch.
- ``lora``: low-rank adapters (peft) and a fully trained head.
- ``lr_decay`` (combinable with full, last-n, gradual): layer-wise learning rates, ``lr * decay**depth`` where depth
  is 0 for the head and the top layer, 1 for the layer below, ..., and num_layers for the embeddings.
- ``group_lrs`` (instead of lr_decay): discriminative learning rates for four groups, embeddings / lower half of
  the layers / upper half / head.
- ``head_warmup_steps`` or ``head_warmup_epochs`` (with full or last-n): two-stage fine-tuning; the head trains
  alone at ``head_lr`` first, then the strategy's parameters open at ``training.learning_rate`` (lower).

Layers are discovered without per-model code: the embeddings are the base model's ``embeddings`` module and the
encoder layers the base model's ``nn.ModuleList`` whose length is ``config.num_hidden_layers`` (BERT, RoBERTa,
XLM-R, DistilBERT, MPNet, ELECTRA...). ALBERT shares one layer's weights across depths, so it cannot be split by
layer; that and other unmapped architectures get a clear error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import NLPTransferError
from .layer_rates import GROUPS


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


def freeze_encoder(model) -> None:
    """feature-extraction with a trained head: the embeddings and every encoder layer are frozen; the pooler and
    the task head train. The pooler (BERT's dense + tanh on [CLS]) is what the classification head reads, so it
    counts as head, as in last-n: a sentence-embedding checkpoint such as all-MiniLM-L6-v2 never trained it, and
    frozen it held that head at 0.51 on SST-2."""
    _train_only_top(layer_map(model), 0)


def train_top_layers(model, n: int) -> None:
    """last-n: embeddings and the lower layers are frozen; the top ``n`` layers, the pooler and the head train."""
    mapped = layer_map(model)
    if not isinstance(n, int) or not 0 <= n <= len(mapped.layers):
        raise NLPTransferError(f"strategy last-n: n must be between 0 and {len(mapped.layers)} (the model's layers), got {n!r}")
    _train_only_top(mapped, n)


def _train_only_top(mapped: LayerMap, n: int) -> None:
    trainable = _parameter_ids(torch.nn.ModuleList(mapped.layers[len(mapped.layers) - n:] if n else []))
    for parameter in mapped.base.parameters():
        parameter.requires_grad = id(parameter) in trainable
    # pooler and other base-model parts above the layers (e.g. BERT's pooler) train with the head
    pooler = getattr(mapped.base, "pooler", None)
    if pooler is not None:
        for parameter in pooler.parameters():
            parameter.requires_grad = True


def parameter_roles(model) -> dict[int, tuple[str, int]]:
    """id(parameter) -> (group, depth). Groups: ``embeddings``; ``lower`` = the bottom half of the encoder
    layers (``n // 2`` of them), ``upper`` = the rest; ``head`` = everything above the layers (pooler and task
    head). Depth counts from the top: 0 for the head and the top layer, num_layers for the embeddings."""
    mapped = layer_map(model)
    total = len(mapped.layers)
    roles = {id(p): ("head", 0) for p in model.parameters()}
    for index, layer in enumerate(mapped.layers):
        for parameter in layer.parameters():
            roles[id(parameter)] = ("lower" if index < total // 2 else "upper", total - 1 - index)
    for parameter in mapped.embeddings.parameters():
        roles[id(parameter)] = ("embeddings", total)
    return roles


def depth_of_parameters(model) -> dict[int, int]:
    """id(parameter) -> depth from the top: 0 for the head and the top layer, num_layers for the embeddings."""
    return {key: depth for key, (_, depth) in parameter_roles(model).items()}


def parameter_groups(model, learning_rate: float, weight_decay: float, decay: float | None,
                     decay_names: set[str], include_frozen: bool = False,
                     group_lrs: dict[str, float] | None = None) -> list[dict]:
    """Optimizer groups.

    - ``decay`` (layer-wise decay): lr * decay**depth, depth 0 for the head and the top layer;
    - ``group_lrs`` (discriminative groups): an explicit lr for ``embeddings``/``lower``/``upper``/``head``,
      the others keep ``learning_rate``;
    - neither: one lr (head and encoder still in separate groups, so a two-stage schedule can tell them apart).

    Weight decay only on ``decay_names`` (Trainer's choice: not on biases and LayerNorm weights). Frozen
    parameters are left out unless ``include_frozen`` (gradual unfreezing and head warm-up open them later).
    Each group carries ``role`` (its discriminative group, ``head`` for the head) and ``depth``."""
    if decay is not None and group_lrs:
        raise NLPTransferError("strategy: use either lr_decay or group_lrs, not both")
    try:
        roles = parameter_roles(model)
    except NLPTransferError:
        if decay is not None or group_lrs:
            raise
        roles = {}  # an unmappable model without per-layer rates: one group (plus no-decay)
    groups: dict[tuple, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad and not include_frozen:
            continue
        role, depth = roles.get(id(parameter), ("head", 0))
        if decay is not None:
            lr = learning_rate * decay ** depth
        elif group_lrs:
            lr = group_lrs.get(role, learning_rate)
        else:
            lr = learning_rate
        no_decay = name not in decay_names
        key = (depth, GROUPS.index(role), no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr, "weight_decay": 0.0 if no_decay else weight_decay,
                           "depth": depth, "role": role}
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
            # one group per epoch begun before this one: state.epoch is that whole number at an epoch's start, but
            # a run resumed mid-epoch begins its epoch at the checkpoint's fraction (1.75: the second epoch, 15 of
            # its 20 steps done), which must open what that epoch opened (1), not round up to the next epoch's (2)
            if every == "epoch":
                self._open(model, math.floor(state.epoch or 0), state.global_step)

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if every != "epoch" and state.global_step and state.global_step % every == 0:
                self._open(model, state.global_step // every, state.global_step)

    return GradualUnfreezing()


def make_head_warmup(steps: int | None = None, epochs: float | None = None):
    """A TrainerCallback for two-stage fine-tuning: the head (and pooler) train alone for the first stage,
    then the parameters the strategy trains open (everything for ``full``, the top layers for ``last-n``).

    The stage length is ``steps``, or ``epochs`` converted to steps by `TaskTrainer` once it knows the number
    of steps per epoch (it sets ``callback.steps``). The learning rates of the two stages come from
    `two_stage_schedule`."""
    from transformers import TrainerCallback

    if steps is None and epochs is None:
        raise NLPTransferError("head warm-up needs head_warmup_steps or head_warmup_epochs")

    class HeadWarmup(TrainerCallback):
        def __init__(self):
            self.steps = steps
            self.epochs = epochs
            self.after: dict[int, bool] = {}
            self.opened_at: int | None = None

        def _open(self, model, step: int) -> None:
            for parameter in model.parameters():
                parameter.requires_grad = self.after.get(id(parameter), parameter.requires_grad)
            self.opened_at = step

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.after = {id(p): p.requires_grad for p in model.parameters()}  # what the strategy trains
            if state.global_step >= self.steps:  # resumed after the warm-up
                self._open(model, state.global_step)
                return
            mapped = layer_map(model)
            pooler = _parameter_ids(getattr(mapped.base, "pooler", None) or torch.nn.Module())
            for parameter in mapped.base.parameters():
                parameter.requires_grad = parameter.requires_grad and id(parameter) in pooler

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if self.opened_at is None and state.global_step >= self.steps:
                self._open(model, state.global_step)

    return HeadWarmup()


def two_stage_schedule(optimizer, stage_steps: int, total_steps: int, warmup_steps: int, head_lr: float):
    """LambdaLR for two-stage fine-tuning. Stage 1 (``stage_steps``): head groups at the constant ``head_lr``,
    the rest at 0. Stage 2: every group at its own learning rate under the linear schedule (warm-up over
    ``warmup_steps``, then linear decay to 0 at ``total_steps``), counted from the start of stage 2."""
    from torch.optim.lr_scheduler import LambdaLR

    length = max(1, total_steps - stage_steps)

    def second(step: int) -> float:
        s = step - stage_steps
        if s < warmup_steps:
            return s / max(1, warmup_steps)
        return max(0.0, (length - s) / max(1, length - warmup_steps))

    def for_group(group):
        if group.get("role") == "head":
            factor = head_lr / group["lr"] if group["lr"] > 0 else 0.0
            return lambda step: factor if step < stage_steps else second(step)
        return lambda step: 0.0 if step < stage_steps else second(step)

    return LambdaLR(optimizer, [for_group(group) for group in optimizer.param_groups])


def apply_lora(model, strategy, peft_task_type: str | None):
    """Wrap ``model`` with LoRA adapters (peft). Target modules default to peft's choice for the architecture
    (e.g. query/value for BERT-family); the task head, and the encoder's pooler when it has one and
    ``strategy.pooler`` is on, are trained fully and saved with the adapter."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise NLPTransferError("strategy lora needs the peft package; install it with `pip install peft`") from None
    if peft_task_type is None:
        raise NLPTransferError("this task has no LoRA form; use strategy full, last-n or gradual")
    task_type = getattr(TaskType, peft_task_type)
    # peft adds the task head (classifier / score) to modules_to_save itself; the pooler trains with it on request
    pooler = getattr(getattr(model, getattr(model, "base_model_prefix", ""), None), "pooler", None)
    extra = ["pooler"] if getattr(strategy, "pooler", False) and pooler is not None else None
    config = LoraConfig(task_type=task_type, r=strategy.r, lora_alpha=strategy.alpha, lora_dropout=strategy.dropout,
                        target_modules=strategy.target_modules, modules_to_save=extra)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        kind = getattr(model.config, "model_type", type(model).__name__)
        raise NLPTransferError(
            f"LoRA cannot pick target modules for a '{kind}' model ({str(exc).splitlines()[0]}); set "
            f"strategy.target_modules, e.g. [query, value]"
        ) from None


@dataclass
class StrategyPlan:
    """A recipe's strategy made concrete for one model: what the Trainer needs from it, as one object.

    ``callbacks`` (gradual unfreezing, the head warm-up), and how the optimizer and schedule are built:
    per-depth (``lr_decay``) or per-group (``group_lrs``) learning rates, frozen parameters in the optimizer from
    the start (``all_parameters``: they are opened mid-run), and the two-stage schedule (``head_warmup``)."""

    name: str
    callbacks: list
    lr_decay: float | None = None
    group_lrs: dict[str, float] | None = None
    head_warmup: object | None = None  # the two-stage callback; the Trainer resolves its length in steps
    head_lr: float | None = None
    all_parameters: bool = False
    soft_loss: object | None = None  # (logits, labels, soft targets) -> loss, for rows with soft targets (distill)

    @property
    def custom_optimizer(self) -> bool:
        return self.lr_decay is not None or self.all_parameters or bool(self.group_lrs) or self.head_warmup is not None


def make_plan(name: str, callbacks: list, *, opens_layers: bool = False, lr_decay: float | None = None,
              group_lrs: dict[str, float] | None = None, head_warmup_steps: int | None = None,
              head_warmup_epochs: float | None = None, head_lr: float | None = None,
              soft_loss=None) -> StrategyPlan:
    """The `StrategyPlan` of a strategy: its own ``callbacks`` (``opens_layers``: they open frozen parameters
    mid-run) plus the shared layer-rate options it declares (`nlp_transfer.layer_rates`); a head warm-up adds its
    callback."""
    callbacks = list(callbacks)
    head_warmup = None
    if head_warmup_steps is not None or head_warmup_epochs is not None:
        head_warmup = make_head_warmup(head_warmup_steps, head_warmup_epochs)
        callbacks.append(head_warmup)
    return StrategyPlan(name, callbacks, lr_decay, group_lrs, head_warmup, head_lr,
                        all_parameters=opens_layers or head_warmup is not None, soft_loss=soft_loss)


def distillation_loss(logits, labels, soft, temperature: float, soft_weight: float):
    """Knowledge distillation (Hinton et al. 2015): ``soft_weight`` x T^2 x KL(soft || softmax(logits / T)) over every
    row, plus (1 - ``soft_weight``) x cross-entropy over the rows with a gold label (``labels`` >= 0; rows the
    teacher alone labelled carry -100). ``soft`` holds the teacher's probabilities, already softened by T."""
    import torch.nn.functional as F

    soft_term = F.kl_div(F.log_softmax(logits / temperature, dim=-1), soft.to(logits.dtype),
                         reduction="batchmean") * temperature ** 2
    labelled = labels >= 0
    hard_term = F.cross_entropy(logits[labelled], labels[labelled]) if bool(labelled.any()) else logits.sum() * 0
    return soft_weight * soft_term + (1 - soft_weight) * hard_term
