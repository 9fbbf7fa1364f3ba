"""Few-shot contrastive fine-tuning of the sentence encoder (the SetFit recipe), before a probe fits on it.

    strategy: {name: contrastive, iterations: 20}

From the few labelled rows, `sentence_pairs` draws pairs: per iteration, every row once with another row of its
label (target similarity 1) and once with a row of another label (0). sentence-transformers trains the encoder
with its own trainer (`SentenceTransformerTrainer`) and the loss ``strategy.loss`` names (`PAIR_LOSSES`; SetFit's
cosine-similarity loss by default); the encoder is then saved
(safetensors) into the run folder, and `nlp_transfer.probe` fits its linear probe on that encoder's pooled
features, as it does on a frozen one. The trained folder loads with `load_model` like any probe run.

sentence-transformers is an optional dependency (``pip install 'nlp_transfer[fewshot]'``): a recipe naming this
strategy without it fails before training with that command.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NLPTransferError

ENCODER_DIR = "encoder"  # the fine-tuned encoder, inside the run folder


MIN_VERSION = (6, 2)  # the module layout used below (sentence_transformers.base.modules)


def check_installed() -> None:
    """A one-line error, without importing it, when sentence-transformers is missing or older than 6.2."""
    import importlib.metadata
    import re

    try:
        version = importlib.metadata.version("sentence-transformers")
    except importlib.metadata.PackageNotFoundError:
        version = None
    numbers = tuple(int(part) for part in re.findall(r"\d+", version or "")[:2])
    if version is None or numbers < MIN_VERSION:
        found = f"{version} is installed" if version else "it is not installed"
        raise NLPTransferError(f"strategy contrastive trains with sentence-transformers >= 6.2 ({found}): "
                               f"pip install 'nlp_transfer[fewshot]'")


def sentence_pairs(labels: list[int], iterations: int, max_pairs: int | None,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-index pairs and their targets: per iteration, each row with a random other row of its label (1.0; none
    when its label has a single row) and with a random row of another label (0.0). Shuffled; when there are more
    than ``max_pairs``, a seeded sample of them. Returns (first, second, target)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise NLPTransferError(f"strategy contrastive needs rows of at least two labels to draw pairs; the training "
                               f"rows all have label {classes.tolist()}")
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(labels == label) for label in classes.tolist()}
    others = {label: np.flatnonzero(labels != label) for label in classes.tolist()}
    first, second, target = [], [], []
    for _ in range(iterations):
        for row, label in enumerate(labels.tolist()):
            same = members[label][members[label] != row]
            if len(same):
                first.append(row), second.append(int(rng.choice(same))), target.append(1.0)
            first.append(row), second.append(int(rng.choice(others[label]))), target.append(0.0)
    order = rng.permutation(len(first))
    if max_pairs is not None and len(order) > max_pairs:
        order = order[:max_pairs]
    return np.asarray(first)[order], np.asarray(second)[order], np.asarray(target, dtype=np.float32)[order]


# strategy.loss -> the sentence-transformers loss that trains the pairs (each takes the pair's target, 1 or 0):
# cosine: squared error between the two texts' cosine similarity and the target (SetFit's);
# contrastive: Hadsell et al.'s loss on cosine distance: same-label pairs pulled together, the others pushed
# beyond a margin of 0.5 and left alone once there; online-contrastive: the same on each batch's hard pairs only
# (same-label pairs farther apart than the nearest other-label pair, and the converse)
PAIR_LOSSES = {"cosine": "CosineSimilarityLoss", "contrastive": "ContrastiveLoss",
               "online-contrastive": "OnlineContrastiveLoss"}


def pair_loss(name: str, encoder):
    """The loss object for ``strategy.loss`` ``name`` (a key of `PAIR_LOSSES`), on ``encoder``."""
    from sentence_transformers.sentence_transformer import losses

    return getattr(losses, PAIR_LOSSES[name])(encoder)


WIDE = 768  # hidden size from which an encoder trains its pairs at SetFit's rate
NARROW_RATE, WIDE_RATE = 1e-4, 2e-5


def pair_learning_rate(hidden_size: int | None) -> float:
    """The pair-training rate when the recipe gives none: 1e-4 for encoders narrower than 768 (MiniLM-L6, hidden 384:
    SetFit's 2e-5 left its pair loss at 0.23 after 40 steps and cost 2 points at 8 rows per label), SetFit's 2e-5 from
    768 up (MPNet-base: 1e-4 fitted the pairs to a loss of 0.03-0.05 and scored 0.849 on two 8-per-label SST-2
    subsets where 2e-5 scored 0.899 and 0.884). Measured with both encoders (benchmarks/RESULTS.md, few-shot against
    SetFit)."""
    return WIDE_RATE if (hidden_size or 0) >= WIDE else NARROW_RATE


# strategy.end_to_end: after the pairs, the encoder trains with a linear head on the labelled rows themselves
# (SetFit's differentiable head with ``end_to_end=True``: its rates, schedule and AdamW)
HEAD_RATE, BODY_RATE, HALVE_EVERY = 1e-2, 1e-5, 5  # the head's and the encoder's rates; halved every 5 epochs
END_TO_END_EPOCHS = 16  # SetFit's: the default of strategy.end_to_end_epochs


def train_through_head(encoder, texts: list[str], labels: list[int], epochs: int, batch_size: int,
                       seed: int) -> float:
    """Train ``encoder`` (a `SentenceTransformer`) and a fresh linear head on its sentence embeddings with
    cross-entropy on ``texts``/``labels``, ``epochs`` passes in seeded shuffled batches (AdamW; the head at
    `HEAD_RATE`, the encoder at `BODY_RATE`, both halved every `HALVE_EVERY` epochs). The head is dropped
    afterwards: the probe refits on the trained encoder's features. Returns the last epoch's mean loss."""
    import torch
    from sentence_transformers.util import batch_to_device

    torch.manual_seed(seed)
    classes = {label: index for index, label in enumerate(sorted(set(labels)))}
    head = torch.nn.Linear(encoder.get_embedding_dimension(), len(classes)).to(encoder.device)
    optimizer = torch.optim.AdamW([{"params": encoder.parameters(), "lr": BODY_RATE},
                                   {"params": head.parameters(), "lr": HEAD_RATE}])
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=HALVE_EVERY, gamma=0.5)
    targets = torch.tensor([classes[label] for label in labels], device=encoder.device)
    rng = np.random.default_rng(seed)
    encoder.train()
    losses = []
    for _ in range(epochs):
        losses = []
        order = rng.permutation(len(texts))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            features = batch_to_device(encoder.preprocess([texts[i] for i in batch]), encoder.device)
            loss = torch.nn.functional.cross_entropy(head(encoder(features)["sentence_embedding"]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        schedule.step()
    encoder.eval()
    return float(np.mean(losses)) if losses else 0.0


def fine_tune_encoder(model: str, texts: list[str], labels: list[int], options, seed: int, max_length: int,
                      out: Path, trust_remote_code: bool, device: str) -> dict[str, Any]:
    """Train ``model``'s encoder on pairs of ``texts`` (`sentence_pairs`) with ``options`` (the `Contrastive`
    strategy: iterations, max_pairs, epochs, batch_size, learning_rate, pooling, loss; with end_to_end, then
    `train_through_head` on the rows themselves) and save it to ``out``
    (safetensors + tokenizer). Returns what metrics.json records of it."""
    check_installed()
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling
    from transformers.utils import logging as hf_logging

    from .models import resolve

    first, second, target = sentence_pairs(labels, options.iterations, options.max_pairs, seed)
    pairs = Dataset.from_dict({"sentence1": [texts[i] for i in first], "sentence2": [texts[i] for i in second],
                               "label": target.tolist()})
    started = time.perf_counter()
    word = Transformer(resolve(model), max_seq_length=max_length,
                       model_kwargs={"trust_remote_code": trust_remote_code, "use_safetensors": True},
                       processor_kwargs={"trust_remote_code": trust_remote_code},
                       config_kwargs={"trust_remote_code": trust_remote_code})
    encoder = SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), options.pooling)],
                                  device=device)
    rate = options.learning_rate or pair_learning_rate(getattr(word.model.config, "hidden_size", None))
    with tempfile.TemporaryDirectory(prefix="nlp-transfer-contrastive-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=options.epochs, per_device_train_batch_size=options.batch_size,
            learning_rate=rate, warmup_ratio=0.1, seed=seed, data_seed=seed, save_strategy="no",
            report_to="none", logging_strategy="no", disable_tqdm=not hf_logging.is_progress_bar_enabled(),
            use_cpu=device == "cpu")
        trainer = SentenceTransformerTrainer(model=encoder, args=args, train_dataset=pairs,
                                             loss=pair_loss(options.loss, encoder))
        result = trainer.train()
    head_loss = (train_through_head(encoder, texts, labels, options.end_to_end_epochs, options.batch_size, seed)
                 if options.end_to_end else None)
    out.mkdir(parents=True, exist_ok=True)
    word.model.save_pretrained(out, safe_serialization=True)
    word.processor.save_pretrained(out)
    return {"pairs": len(target), "positive_pairs": int(target.sum()), "steps": int(result.global_step),
            "loss": round(float(result.training_loss), 6), "seconds": round(time.perf_counter() - started, 2),
            "iterations": options.iterations, "epochs": options.epochs, "batch_size": options.batch_size,
            "learning_rate": rate, "learning_rate_from": "recipe" if options.learning_rate else "encoder width",
            "loss_function": PAIR_LOSSES[options.loss],
            "trainer": "sentence_transformers.SentenceTransformerTrainer",
            **({"end_to_end": {"epochs": options.end_to_end_epochs, "head_learning_rate": HEAD_RATE,
                               "body_learning_rate": BODY_RATE, "loss": round(head_loss, 6)}}
               if options.end_to_end else {})}
