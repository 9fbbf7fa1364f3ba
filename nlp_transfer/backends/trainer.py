"""The Trainer backend: transformers.Trainer fine-tuning (every strategy but the probe's), LoRA, masked-LM; the
folders it writes are plain transformers folders plus the sidecar, so models from elsewhere open here too."""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import TRAINING_DEFAULTS
from ..errors import NLPTransferError, NoTaskHeadError, did_you_mean
from ..record import STAGING, run_record, staging_folder
from ..runtime import Runtime
from ..tasks.base import TASKS, get_task, greater_is_better
from .base import Backend, Fitted, Job, register

# Trainer's evaluation entries that are timings, not scores (throughput is kept apart under "predict")
TRAINER_BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time")
TASK_HEADS = {task.name: task.head_suffix for task in TASKS.values() if task.auto_model}  # tasks with a predictor
NO_HEAD = ("Model", "ForMaskedLM", "ForPreTraining", "LMHeadModel", "ForCausalLM")  # encoders, language-model heads


@register("trainer")
class TrainerBackend(Backend):
    title = "transformers Trainer"
    resumable = True
    distributed = True

    def load(self, folder: Path, sidecar: dict[str, Any], runtime: Runtime, trust_remote_code: bool = False,
             variant: str | None = None):
        """A `TextClassifier` or `TokenTagger` (by the task head the folder holds) on ``runtime``'s device."""
        import transformers

        from ..models import load_pretrained, load_tokenizer, max_positions, resolve
        from ..predictors import TextClassifier, TokenTagger
        from ..sidecar import check_positions

        location = resolve(str(folder))
        task = get_task(task_of(folder, location, sidecar, trust_remote_code))  # refuses a folder without a head
        loader = getattr(transformers, task.auto_model)
        try:
            if sidecar.get("adapter"):
                model = load_adapter(location, loader, sidecar["adapter"]["base_model"], trust_remote_code)
            else:
                model = load_pretrained(loader, location, trust_remote_code)
        except (OSError, ValueError) as exc:  # peft's errors; load_pretrained raises one-line errors itself
            raise NLPTransferError(f"cannot load model '{folder}': {str(exc).strip().splitlines()[0]}") from None
        model.to(runtime.device)
        max_length = sidecar.get("max_length", 128)
        check_positions(folder, "max_length", max_length, max_positions(model.config))
        tokenizer = load_tokenizer(location, trust_remote_code, for_words=task.words_input)
        if task.words_input:  # words in, one tag per word out
            return TokenTagger(model, tokenizer, max_length, sidecar.get("stride", 32), sidecar.get("strict", False),
                               runtime, label_map=sidecar.get("label_map"))
        return TextClassifier(model, tokenizer, max_length, sidecar.get("threshold", 0.5), runtime)


    def check(self, recipe, card) -> None:
        check_model(recipe)

    def fit(self, job: Job) -> Fitted:
        """Train with transformers.Trainer (every rank under accelerate launch / torchrun) and stage the final
        model; the returned `Fitted` says whether this process writes (``writes``: the main one)."""
        recipe, data = job.recipe, job.data
        task = get_task(recipe.task)
        has_eval = recipe.eval_split in data.splits
        main_metric = task.implementation().main_metric(data.problem_type)
        _check_metric(recipe, task.implementation().metric_names(data.problem_type), data.problem_type)
        if recipe.early_stopping.patience is not None and not has_eval:
            raise NLPTransferError(f"{recipe.source}: early_stopping needs an '{recipe.eval_split}' split in the data "
                                   f"card")
        args = training_arguments(recipe, recipe.early_stopping.metric or main_metric, has_eval, job.run.work,
                                  job.runtime)
        from ..models import load_tokenizer

        tokenizer = load_tokenizer(recipe.model, recipe.trust_remote_code, for_words=task.words_input)
        # every check is done: only now does the run folder change (the main process writes; the others wait for it)
        args.distributed_state.wait_for_everyone()  # every rank has planned from the same, untouched folder
        if args.should_save:
            job.start()
        args.distributed_state.wait_for_everyone()
        trainer, prepared = _build(job, task, args, tokenizer)
        metrics = _train(job, task, trainer, prepared, main_metric)
        return _stage(job, trainer, prepared, metrics)


def _build(job: Job, task, args, tokenizer):
    """The task's prepared data and model, the strategy applied, and the Trainer over them."""
    from transformers import EarlyStoppingCallback, set_seed

    from ..data.adapters import DynamicPaddingCollator

    recipe = job.recipe
    set_seed(recipe.seed)  # before the head is created, so the same seed gives the same run
    prepared = task.implementation().prepare(recipe, job.data, tokenizer, recipe.eval_split in job.data.splits)
    prepared.model, strategy = recipe.strategy.apply(prepared.model, task.peft_task_type)
    callbacks = list(strategy.callbacks)
    if recipe.early_stopping.patience is not None:
        callbacks.append(EarlyStoppingCallback(recipe.early_stopping.patience, recipe.early_stopping.threshold))
    callbacks += list(job.callbacks)
    with _tensorboard_dir(job.run.work / "logs"):  # read when Trainer creates its callbacks
        trainer = trainer_class()(
            model=prepared.model, args=args, train_dataset=prepared.train_set, eval_dataset=prepared.eval_set,
            processing_class=tokenizer,
            data_collator=prepared.collator or DynamicPaddingCollator(tokenizer, 8 if (args.fp16 or args.bf16) else None,
                                                                      token_labels=prepared.token_labels),
            compute_metrics=prepared.metrics, callbacks=callbacks, task_loss=prepared.loss,
            preprocess_logits_for_metrics=prepared.preprocess_logits, strategy=strategy,
            train_sampler=prepared.train_sampler,
        )
    return trainer, prepared


def _train(job: Job, task, trainer, prepared, main_metric: str) -> dict[str, Any]:
    """Train (from the run's checkpoint when resuming), evaluate, and return the run record."""
    recipe, data, run = job.recipe, job.data, job.run
    has_eval = recipe.eval_split in data.splits
    if trainer.args.should_save:
        eval_rows = len(data.splits[recipe.eval_split]) if has_eval else 0
        replacing = " (replacing the run there when it finishes)" if run.replacing else ""
        print(f"nlp-transfer: training {recipe.model} on {job.card.name} ({len(data.splits[recipe.train_split])} train "
              f"rows, {eval_rows} {recipe.eval_split} rows, {prepared.summary}) -> {run.target}{replacing}"
              + (f", resuming from {Path(run.checkpoint).name}" if run.checkpoint else ""), flush=True)
    before = None
    if prepared.evaluate_before and has_eval and run.checkpoint is None:
        before = _derived(task, {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()})
        if trainer.args.should_save:
            print(f"nlp-transfer: before training: {_brief(before)}", flush=True)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=run.checkpoint)
    train_seconds = time.perf_counter() - started
    eval_metrics = trainer.evaluate() if has_eval else {}
    metrics = _collect_metrics(job, trainer, train_output, train_seconds, eval_metrics, prepared.metrics, main_metric)
    metrics["eval"] = _derived(task, metrics["eval"])
    if before is not None:
        metrics["eval_before"] = {k: v for k, v in before.items() if k in ("loss", "perplexity")}
    metrics["rows"] = {split: len(rows) for split, rows in data.splits.items()}
    if any(data.repairs.values()):
        metrics["repaired_tags"] = data.repairs  # I- tags after O etc., made B- on reading
    if data.teacher:
        metrics["teacher"] = data.teacher  # strategy distill
    world = trainer.args.world_size
    if world > 1:
        print(f"[rank {trainer.args.process_index}/{world}] finished: global_step={trainer.state.global_step} "
              f"eval_{main_metric}={eval_metrics.get('eval_' + main_metric)} weights={state_digest(trainer.model)} "
              f"writes_outputs={trainer.args.should_save}", flush=True)
    return metrics


def _stage(job: Job, trainer, prepared, metrics: dict[str, Any]) -> Fitted:
    """Save the final model and its sidecar into the staging folder (every rank calls save_model; the main one
    writes); the rest of the run's end is `outputs.finish`'s."""
    from ..reports import model_card
    from ..sidecar import write_sidecar

    recipe, data = job.recipe, job.data
    staging = job.run.work / STAGING
    trainer.save_model(str(staging))  # every rank calls it (some backends need that); only the main one writes
    runtime = Runtime.from_training_args(trainer.args)  # final scoring runs where and as training ran
    readme = lambda final: model_card(recipe, job.card, final, data.label_names, prepared.pipeline_tag)  # noqa: E731
    if not trainer.args.should_save:
        return Fitted(metrics, readme, runtime, writes=False)
    staging = staging_folder(job.run.work)
    sidecar = {"task": recipe.task, "max_length": recipe.max_length, "label_names": data.label_names,
               **prepared.sidecar}
    if recipe.strategy.adapter:  # adapter + head only (lora): keep the head's config and name the base model
        trainer.model.base_model.model.config.save_pretrained(staging)
        sidecar["adapter"] = {"base_model": recipe.model}
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; recipe.yaml holds the same settings
    write_sidecar(staging, "trainer", sidecar)
    if prepared.after_save is not None:
        prepared.after_save(staging, trainer.model)
    return Fitted(metrics, readme, runtime,
                  predictions=prepared.prediction_rows() if prepared.prediction_rows is not None else None,
                  calibration_rows=prepared.calibration_rows() if prepared.calibration_rows is not None else None,
                  after=None if recipe.keep_checkpoints else _drop_checkpoints)


def _drop_checkpoints(folder: Path) -> None:
    from ..io import remove_tree

    for checkpoint in folder.glob("checkpoint-*"):
        remove_tree(checkpoint, "the finished run's checkpoint")




def task_of(path: str | Path, location: str, sidecar: dict[str, Any], trust_remote_code: bool) -> str:
    """Which head the folder holds: its sidecar says (our runs), else its config's architectures. A folder
    without a task head is refused: loading it would put a randomly initialised head on it, whose
    predictions are confident noise."""
    from ..models import load_config

    task = sidecar.get("task")
    fix = f"train a task on it first, e.g. model: {path} in a classification recipe"
    if task in TASKS and task not in TASK_HEADS:  # masked-LM: an adapted encoder, nothing to predict with
        raise NoTaskHeadError(f"{path}: this is a {TASKS[task]} run (domain-adapted encoder), not a task model; {fix} "
                              f"(nlp-transfer embed gives its embeddings as they are)")
    if task is not None:
        if task not in TASK_HEADS:
            raise NLPTransferError(f"{path}: nlp_transfer.json names task '{task}', which has no predictor; "
                                   f"load_model loads {' and '.join(TASK_HEADS)} runs")
        return task
    architectures = list(load_config(location, trust_remote_code=trust_remote_code).architectures or [])
    for name, suffix in TASK_HEADS.items():
        if any(str(a).endswith(suffix) for a in architectures):
            return name
    if not architectures or all(str(a).endswith(NO_HEAD) for a in architectures):
        what = ", ".join(architectures) or "config.json names no architectures"
        raise NoTaskHeadError(f"{path}: this is a bare encoder / masked-LM checkpoint with no task head ({what}); "
                              f"{fix} (nlp-transfer embed gives its embeddings as they are)")
    raise NLPTransferError(f"{path}: its head ({', '.join(architectures)}) is neither a sequence nor a token "
                           f"classifier, the two heads load_model predicts with; {fix}")


def load_adapter(folder: str, loader, base_model: str, trust_remote_code: bool = False):
    """A LoRA run's folder: the base model with the saved head config, then the adapter (and head) on top."""
    from peft import PeftModel

    from ..models import load_config, load_pretrained

    config = load_config(folder, trust_remote_code=trust_remote_code)
    base = load_pretrained(loader, base_model, trust_remote_code, config=config)
    return PeftModel.from_pretrained(base, folder).eval()


def trainer_class():
    from functools import partial

    from transformers import Trainer

    class TaskTrainer(Trainer):
        """Stock Trainer, plus: a task's own loss (class weights), and evaluation read in dataset order."""

        def __init__(self, *args, task_loss=None, strategy=None, train_sampler=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.train_sampler = train_sampler  # the task's training order (a split on disk); None: Trainer's own
            self.strategy = strategy  # a strategies.StrategyPlan: optimizer groups and schedule (None: stock)
            self.head_warmup = strategy.head_warmup if strategy else None  # its stage length is resolved here
            # Our heads return a batch *mean* loss and ignore num_items_in_batch, but their forward() takes
            # **kwargs, so Trainer would multiply the loss by the number of processes under DDP (2x loss and
            # gradients on 2 ranks). Declaring that the model takes no loss kwargs keeps the mean as it is.
            self.model_accepts_loss_kwargs = False
            self.task_loss = task_loss

        def _get_train_sampler(self, train_dataset=None):
            if self.train_sampler is not None:  # the task's own order (a split on disk: data.order.ScatteredOrder)
                return self.train_sampler
            return epoch_seeded(super()._get_train_sampler(train_dataset), self.args)  # resumes read the same batches

        def _get_eval_sampler(self, eval_dataset):
            # Trainer groups *evaluation* batches by length too when train_sampling_strategy="group_by_length",
            # in a shuffled order; predictions could then not be matched back to their rows. Tasks sort the
            # evaluation set by length themselves (same saving on padding) and it is read in order.
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset)

        def create_optimizer(self, model=None):
            # Our own groups when a strategy needs them: per-depth (lr_decay) or per-group (group_lrs) rates, frozen
            # parameters included from the start (gradual unfreezing, head warm-up), head apart (two-stage schedule).
            if self.optimizer is None and self.strategy is not None and self.strategy.custom_optimizer:
                from ..strategies import parameter_groups

                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
                optimizer_kwargs.pop("lr", None)
                groups = parameter_groups(self.model, self.args.learning_rate, self.args.weight_decay,
                                          self.strategy.lr_decay, set(self.get_decay_parameter_names(self.model)),
                                          self.strategy.all_parameters, self.strategy.group_lrs)
                self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
                return self.optimizer
            return super().create_optimizer(model) if model is not None else super().create_optimizer()

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.head_warmup is None or self.lr_scheduler is not None:
                return super().create_scheduler(num_training_steps, optimizer)
            from ..strategies import two_stage_schedule

            if self.args.lr_scheduler_type != "linear":
                raise NLPTransferError("head warm-up (two-stage) uses the linear schedule; remove training.lr_scheduler_type")
            stage = self.head_warmup.steps
            if stage is None:  # epochs -> steps, from this run's steps per epoch
                per_epoch = num_training_steps / max(self.args.num_train_epochs, 1e-9)
                if self.args.max_steps > 0:
                    raise NLPTransferError("with training.max_steps, give the warm-up as head_warmup_steps")
                stage = self.head_warmup.steps = max(1, round(self.head_warmup.epochs * per_epoch))
            if stage >= num_training_steps:
                raise NLPTransferError(f"the head warm-up ({stage} steps) is as long as the whole run "
                                       f"({num_training_steps} steps); shorten it or train longer")
            warmup = self.args.get_warmup_steps(num_training_steps - stage)
            self.lr_scheduler = two_stage_schedule(optimizer or self.optimizer, stage, num_training_steps, warmup,
                                                   self.strategy.head_lr)
            self._created_lr_scheduler = True
            return self.lr_scheduler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            soft = inputs.pop("soft_labels", None)  # a teacher's targets (strategy distill): the strategy's loss
            loss_fn = self.task_loss if soft is None else partial(self.strategy.soft_loss, soft=soft)
            if loss_fn is None or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = loss_fn(outputs.logits, labels)
            return (loss, outputs) if return_outputs else loss

    return TaskTrainer


def epoch_seeded(sampler, args):
    """The training sampler Trainer chose, with ``group_by_length`` (our default) shuffling each epoch from
    ``(data_seed or seed) + epoch`` alone; other samplers as they are.

    transformers' LengthGroupedSampler draws each epoch's order from the global torch RNG as the epoch starts. A
    run resumed mid-epoch starts that epoch with another RNG state (Trainer restores the checkpoint's only after the
    first batch), so it would train the rest of the epoch, and every later one, on other batches than the run that
    was killed, and end with other weights. Seeded by epoch, as transformers' BatchRebalanceSampler and accelerate's
    seedable RandomSampler are, the order of an epoch is the same whether it is trained whole or resumed mid-way;
    Trainer calls ``set_epoch`` before each epoch (through accelerate's data loader, also when it skips the batches
    a resumed run has already trained). Every rank of a distributed run draws the same order, as before."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    if type(sampler) is not LengthGroupedSampler:
        return sampler
    seed = args.data_seed if args.data_seed is not None else args.seed
    return _epoch_seeded_sampler_class()(sampler.batch_size, sampler.lengths, seed)


@lru_cache(maxsize=None)
def _epoch_seeded_sampler_class():
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=list(lengths))
            self.seed = seed
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    return EpochSeededLengthGroupedSampler


def training_arguments(recipe, main_metric: str, has_eval: bool, output_dir: str | Path | None = None,
                       runtime: Runtime | None = None):
    """Our defaults, then the recipe's ``training:`` keys on top, as TrainingArguments (checkpoints and logs go to
    ``output_dir``, by default the recipe's). ``runtime`` (``train --device/--precision``): the CPU
    (``use_cpu``) or an accelerator, and bf16/fp16 mixed precision, unless ``training:`` says otherwise."""
    import importlib.util

    from transformers import TrainingArguments

    user = dict(recipe.training)
    values: dict[str, Any] = {
        "output_dir": str(output_dir or recipe.output_dir),
        **TRAINING_DEFAULTS,
        "eval_strategy": "epoch" if has_eval else "no",
        "seed": recipe.seed,
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        "remove_unused_columns": False,  # our collator keeps exactly the model's inputs
        "batch_eval_metrics": True,  # stream metrics per batch: no full logits held in memory
        "dataloader_pin_memory": _cuda_available(),
        "report_to": ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
    }
    if runtime is not None:
        values.update(_runtime_arguments(runtime))
    values.update(user)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _cuda_available() and "use_cpu" not in user:
        # Several processes but no GPU (accelerate launch --multi_gpu / torchrun on CPUs): without use_cpu,
        # every process would silently train alone with world_size 1. use_cpu gives gloo DDP across them.
        values["use_cpu"] = True
    if has_eval and values.get("eval_strategy", "no") != "no":
        values.setdefault("load_best_model_at_end", True)
        values.setdefault("metric_for_best_model", main_metric)
        if "save_strategy" not in user:
            values["save_strategy"] = values["eval_strategy"]
        if "save_steps" not in user and "eval_steps" in user:
            values["save_steps"] = user["eval_steps"]
        values.setdefault("greater_is_better", greater_is_better(values["metric_for_best_model"]))
    else:
        values["eval_strategy"] = "no"
        values["load_best_model_at_end"] = False
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as exc:
        message = str(exc).strip().splitlines()[0]
        raise NLPTransferError(f"{recipe.source or 'recipe'}: training: {message}") from None


def _runtime_arguments(runtime: Runtime) -> dict[str, Any]:
    """TrainingArguments for a device and precision chosen on the command line (Trainer picks the GPU itself)."""
    values: dict[str, Any] = {}
    if runtime.device_type == "cpu":
        values["use_cpu"] = True
    if runtime.dtype != "float32":
        values["bf16" if runtime.dtype == "bfloat16" else "fp16"] = True
    return values


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def state_digest(model) -> str:
    """A hash of all weights: equal on every DDP rank when the ranks stayed in sync."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]



def check_model(recipe):
    """The model's config loads, and ``max_length`` fits its position embeddings; returns the config."""
    from ..models import load_config, max_positions

    config = load_config(recipe.model, recipe.trust_remote_code)
    limit = max_positions(config)
    if limit is not None and recipe.max_length > limit:
        raise NLPTransferError(f"{recipe.source or 'recipe'}: max_length {recipe.max_length} is longer than {recipe.model} "
                               f"reads ({limit} positions); set max_length <= {limit} (long texts are split into "
                               f"windows where the task supports it)")
    return config



def _derived(task, scores: dict[str, Any]) -> dict[str, Any]:
    """Scores plus what the task derives from them (perplexity from the masked-LM loss)."""
    return {**scores, **task.implementation().derived_metrics(scores)}


def _brief(scores: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if k in ("loss", "perplexity") and isinstance(v, float))


@contextmanager
def _tensorboard_dir(path: Path):
    """TensorBoard logs go to OUTPUT_DIR/logs unless the user set TENSORBOARD_LOGGING_DIR; the variable is
    restored afterwards so a second run in the same process logs into its own folder."""
    key = "TENSORBOARD_LOGGING_DIR"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(path)
    try:
        yield
    finally:
        os.environ.pop(key, None)


def _check_metric(recipe, allowed: tuple[str, ...], problem_type: str) -> None:
    metric = recipe.early_stopping.metric or recipe.training.get("metric_for_best_model")
    if metric is None:
        return
    if metric.removeprefix("eval_") not in allowed:
        raise NLPTransferError(
            f"{recipe.source}: metric '{metric}' is not computed for {problem_type}{did_you_mean(metric, allowed)} "
            f"(choose from {', '.join(allowed)})"
        )


def _collect_metrics(job: Job, trainer, train_output, train_seconds: float, eval_metrics: dict[str, Any],
                     metrics_fn, main_metric: str) -> dict[str, Any]:
    recipe = job.recipe
    eval_part = {k.removeprefix("eval_"): v for k, v in eval_metrics.items()
                 if k.removeprefix("eval_") not in TRAINER_BOOKKEEPING}
    if metrics_fn is not None:
        eval_part.update({k: v for k, v in metrics_fn.details.items() if not isinstance(v, float)})
    train = {
        "runtime_s": round(train_seconds, 2),
        "samples_per_second": train_output.metrics.get("train_samples_per_second"),
        "loss": train_output.metrics.get("train_loss"),
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        # checkpoint names, not paths: a replacing run trains in a hidden sibling folder that is renamed at the end
        "best_checkpoint": _name(trainer.state.best_model_checkpoint),
        "resumed_from": _name(job.run.checkpoint),
    }
    return run_record(recipe, job.card, backend="trainer", problem_type=job.data.problem_type,
                      main_metric=main_metric, model=recipe.model, strategy=recipe.strategy.name,
                      eval_scores=eval_part, train=train, params=_count_parameters(trainer.model),
                      eval_split=recipe.eval_split if eval_metrics else None,
                      predict_rate=eval_metrics.get("eval_samples_per_second"),
                      history=trainer.state.log_history, world_size=trainer.args.world_size)


def _name(path: str | None) -> str | None:
    return Path(path).name if path else None
