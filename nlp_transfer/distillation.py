"""A teacher's soft targets for strategy ``distill``: the training rows, plus the texts only the teacher labels.

    strategy: {name: distill, teacher: runs/sst2-mpnet, temperature: 2.0, soft_weight: 0.5, augment: 4}

`attach_teacher` replaces the training split with its labelled rows followed by the teacher-only texts (label -100):
the texts of ``strategy.unlabelled`` (read as `predict --input` reads a file) and ``strategy.augment`` augmented
copies of every training text. Each row gets ``soft_labels``: the teacher's probabilities softened by the temperature, which the Trainer backend hands to the
strategy's loss (`strategies.distillation_loss`).

Augmentation follows Tang et al. (2019, "Distilling task-specific knowledge from BERT into simple neural
networks"): each word is replaced by the mask token with ``mask_prob``, then with ``ngram_prob`` only an n-gram of
1 to 5 words of the result is kept. Their third rule, swapping words of the same part of speech, needs a tagger and
is left out. The mask token is the teacher's (its tokenizer's, e.g. ``[MASK]``; ``<unk>`` for a static teacher), so
the teacher reads a masked word as masked.

The teacher's logits are computed once per (teacher weights, texts) and cached in ``$NLP_TRANSFER_CACHE/teacher``
as ``.npy``, written chunk by chunk into a temporary file and renamed when complete (a stopped scoring continues
from its last chunk); a second student, or a resumed run, reads them back. The augmented copies are drawn with
``strategy.augment_seed``, not the run's seed, so the runs of every seed (and every student of one teacher) share
one set of texts, which the teacher labels once. NER is out for now: a token tagger's teacher targets are per word and windowed, which needs its
own alignment, and the issue asked for sequence classification.
"""
from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NLPTransferError
from .io import cache_folder, write_text_atomic

UNLABELLED = -100  # the label of rows only the teacher labels; the hard loss skips them
CHUNK = 4096  # texts the teacher scores between writes


def augmented(texts: list[str], copies: int, mask_prob: float, ngram_prob: float, mask_token: str,
              seed: int) -> Iterator[str]:
    """``copies`` augmented versions of each text (copy by copy), seeded: masking, then n-gram sampling."""
    rng = random.Random(seed)
    for _ in range(copies):
        for text in texts:
            words = [mask_token if rng.random() < mask_prob else word for word in text.split()]
            if words and rng.random() < ngram_prob:
                size = rng.randint(1, min(5, len(words)))
                start = rng.randint(0, len(words) - size)
                words = words[start:start + size]
            yield " ".join(words)


def teacher_logits(teacher: str, predictor, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """The teacher's raw logits for ``texts`` (rows in order), from the cache when this teacher scored these texts
    before; otherwise computed chunk by chunk into a temporary ``.npy`` that is renamed into the cache at the end.
    A stopped scoring continues where it was: the rows done so far are noted beside the temporary file."""
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

    from .models import folder_fingerprint

    digest = hashlib.blake2b(folder_fingerprint(Path(teacher)).encode(), digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    target = cache_folder("teacher") / f"{digest.hexdigest()}.npy"
    if not texts:
        raise NLPTransferError(f"strategy distill: no texts for the teacher {teacher} to label")
    if target.is_file():
        return np.load(target, mmap_mode="r")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial, note = target.with_suffix(".partial.npy"), target.with_suffix(".done")
    out, done = _resumed(partial, note, len(texts))
    with tqdm(total=len(texts), initial=done, desc="teacher", unit="text", smoothing=0.05) as bar:
        for start in range(done, len(texts), CHUNK):
            logits = np.asarray(predictor.logits(texts[start:start + CHUNK], batch_size=batch_size), dtype=np.float32)
            if out is None:
                out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts), logits.shape[1]))
            out[start:start + len(logits)] = logits
            out.flush()
            write_text_atomic(note, str(start + len(logits)))
            bar.update(len(logits))
    del out
    partial.replace(target)
    note.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


def _resumed(partial: Path, note: Path, rows: int) -> tuple[np.ndarray | None, int]:
    """The temporary logits of a stopped scoring of the same texts and how many rows it finished, or (None, 0)."""
    from numpy.lib.format import open_memmap

    if not (partial.is_file() and note.is_file()):
        return None, 0
    try:
        done = int(note.read_text().strip())
        out = open_memmap(partial, mode="r+")
    except (OSError, ValueError):
        return None, 0
    if out.shape[0] != rows or not 0 < done <= rows:
        return None, 0
    return out, done


def softened(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _mask_token(predictor) -> str:
    tokenizer = getattr(predictor, "tokenizer", None)
    return getattr(tokenizer, "mask_token", None) or "<unk>"


def attach_teacher(recipe, data) -> None:
    """Replace the training split with its rows plus the teacher-only texts, each with ``soft_labels``; what the run
    records of it goes to ``data.teacher`` (metrics.json: ``teacher``)."""
    from datasets import Dataset

    from .data.chunks import Shard
    from .data.readers import read_texts
    from .inference import load_model

    strategy, source = recipe.strategy, recipe.source or "recipe"
    if recipe.class_weights is not None:
        raise NLPTransferError(f"{source}: class_weights do not apply to strategy distill (the teacher's "
                               f"probabilities are the targets); remove class_weights")
    from .runtime import Runtime

    shard = Shard.current()  # under accelerate launch each process puts the teacher on its own GPU
    predictor = load_model(strategy.teacher, device=shard.local_device(Runtime.resolve("auto").device))
    names = list(getattr(predictor, "label_names", []) or [])
    if names != list(data.label_names):
        raise NLPTransferError(f"{source}: the teacher {strategy.teacher} predicts labels {names}, the data has "
                               f"{list(data.label_names)}; distil from a teacher trained on the same labels")
    rows = data.splits[recipe.train_split]
    texts, labels, lines = list(rows["text"]), list(rows["label"]), list(rows["line"])
    extra = read_texts(strategy.unlabelled) if strategy.unlabelled else []  # as `predict --input` reads a file
    extra += list(augmented(texts, strategy.augment, strategy.mask_prob, strategy.ngram_prob,
                            _mask_token(predictor), strategy.augment_seed))
    if shard.is_main:
        print(f"nlp-transfer: teacher {strategy.teacher} labels {len(texts)} training rows"
              + (f" and {len(extra)} more texts" if extra else ""), file=sys.stderr, flush=True)
    with shard.main_first():  # under accelerate launch the main process scores, the others read the cache
        logits = teacher_logits(strategy.teacher, predictor, texts + extra)
    soft = softened(logits, strategy.temperature)
    agreement = float(np.mean(np.argmax(logits[:len(texts)], axis=1) == np.asarray(labels))) if texts else 0.0
    if shard.is_main:
        print(f"nlp-transfer: the teacher agrees with {agreement:.1%} of the training labels", file=sys.stderr,
              flush=True)
    data.splits[recipe.train_split] = Dataset.from_dict({
        "text": texts + extra, "label": labels + [UNLABELLED] * len(extra), "line": lines + [0] * len(extra),
        "soft_labels": soft.tolist()})
    data.teacher = {"folder": str(strategy.teacher), "labelled_rows": len(texts), "teacher_only_rows": len(extra),
                    "augment": strategy.augment, "augment_seed": strategy.augment_seed,
                    "agreement_with_training_labels": round(agreement, 4), "temperature": strategy.temperature,
                    "soft_weight": strategy.soft_weight}
