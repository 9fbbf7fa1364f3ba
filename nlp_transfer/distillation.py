"""A teacher's soft targets for strategy ``distill``: the training rows, plus the texts only the teacher labels.

    strategy: {name: distill, teacher: runs/sst2-mpnet, temperature: 2.0, soft_weight: 0.5, augment: 4}

`attach_teacher` replaces the training split with its labelled rows followed by the teacher-only texts (label -100):
the texts of ``strategy.unlabelled`` (read as `predict --input` reads a file) and ``strategy.augment`` augmented
copies of every training text. Each row gets ``soft_labels``: the teacher's probabilities softened by the
temperature, which the Trainer backend hands to the strategy's loss (`strategies.distillation_loss`). The split is
written through the Arrow cache as it is built, never held as lists.

Augmentation follows Tang et al. (2019, "Distilling task-specific knowledge from BERT into simple neural
networks"): each word is replaced by the mask token with ``mask_prob``, then with ``ngram_prob`` only an n-gram of
1 to 5 words of the result is kept. Their third rule, swapping words of the same part of speech, needs a tagger and
is left out. The mask token is the teacher's (its tokenizer's, e.g. ``[MASK]``; ``<unk>`` for a static teacher), so
the teacher reads a masked word as masked.

The teacher's logits are computed once per (teacher weights, texts) and cached in ``$NLP_TRANSFER_CACHE/teacher``
as ``.npy``, written chunk by chunk into a temporary file and renamed when complete (a stopped scoring continues
from its last chunk); a second student, or a resumed run, reads them back, and a run with more augmented copies
scores only the texts beyond those an earlier run's cache holds. The augmented copies are drawn with
``strategy.augment_seed``, not the run's seed, so the runs of every seed (and every student of one teacher) share
one set of texts, which the teacher labels once. NER is out for now: a token tagger's teacher targets are per word
and windowed, which needs its own alignment, and the issue asked for sequence classification.
"""
from __future__ import annotations

import hashlib
import itertools
import random
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NLPTransferError
from .io import cache_folder, write_text_atomic

UNLABELLED = -100  # the label of rows only the teacher labels; the hard loss skips them
CHUNK = 4096  # texts the teacher scores between writes


class Column:
    """One column of a `datasets.Dataset`, iterable any number of times, read in batches: the training texts (or
    labels) without a list of them in memory."""

    def __init__(self, dataset, name: str = "text", batch: int = CHUNK):
        self.dataset, self.name, self.batch = dataset, name, batch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[Any]:
        from .data.chunks import dataset_rows

        for (value,) in dataset_rows(self.dataset, [self.name], self.batch):
            yield value


class TeacherTexts:
    """Every text the teacher labels, in row order, iterable any number of times and never held whole: the training
    texts, then the unlabelled file's, then ``copies`` augmented copies of the training texts."""

    def __init__(self, train: Column, unlabelled: str | None, copies: int, augment: dict[str, Any]):
        from .data.readers import iter_texts

        self.train, self.unlabelled, self.copies, self.augment = train, unlabelled, copies, augment
        # counted (and checked: a bad row is one line naming it) before the teacher starts
        self.unlabelled_rows = sum(1 for _ in iter_texts(unlabelled)) if unlabelled else 0

    def __len__(self) -> int:
        return len(self.train) * (1 + self.copies) + self.unlabelled_rows

    def __iter__(self) -> Iterator[str]:
        from .data.readers import iter_texts

        yield from self.train
        if self.unlabelled:
            yield from (text for _, text in iter_texts(self.unlabelled))
        yield from augmented(self.train, self.copies, **self.augment)


def augmented(texts: Iterable[str], copies: int, mask_prob: float, ngram_prob: float, mask_token: str,
              seed: int) -> Iterator[str]:
    """``copies`` augmented versions of each text (copy by copy: ``texts`` is iterated once a copy), seeded: masking,
    then n-gram sampling."""
    rng = random.Random(seed)
    for _ in range(copies):
        for text in texts:
            words = [mask_token if rng.random() < mask_prob else word for word in text.split()]
            if words and rng.random() < ngram_prob:
                size = rng.randint(1, min(5, len(words)))
                start = rng.randint(0, len(words) - size)
                words = words[start:start + size]
            yield " ".join(words)


def teacher_logits(teacher: str, predictor, texts: Iterable[str], batch_size: int = 64) -> np.ndarray:
    """The teacher's raw logits for ``texts`` (rows in order; a sized iterable, read twice: once for the cache key,
    once to score), from the cache when this teacher scored these texts before; otherwise computed chunk by chunk into
    a temporary ``.npy`` that is renamed into the cache at the end. Memory-mapped. A stopped scoring continues where
    it was: the rows done so far are noted beside the temporary file. When the teacher scored the first n of these
    texts before (more augmented copies than last time: the copies are drawn copy by copy), those n rows are copied
    from that cache and only the rest is scored."""
    from numpy.lib.format import open_memmap
    from tqdm.auto import tqdm

    from .data.chunks import chunked
    from .models import folder_fingerprint

    folder = cache_folder("teacher")
    # the key of the first n texts is the running digest after n texts: finished caches whose texts begin ours
    # are found by their lengths (e.g. augment: 1's labels are the first rows of augment: 3's)
    lengths = _cached_lengths(folder)
    digest = hashlib.blake2b(folder_fingerprint(Path(teacher)).encode(), digest_size=16)
    total, prefixes = 0, {}
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
        total += 1
        if total in lengths:
            prefixes.update({total: path for path in lengths[total] if path.stem == digest.hexdigest()})
    target = folder / f"{digest.hexdigest()}.npy"
    if not total:
        raise NLPTransferError(f"strategy distill: no texts for the teacher {teacher} to label")
    if target.is_file():
        return np.load(target, mmap_mode="r")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial, note = target.with_suffix(".partial.npy"), target.with_suffix(".done")
    out, done = _resumed(partial, note, total)
    rows = max((n for n in prefixes if n < total), default=0)
    if rows > done:  # the labels of a shorter run of the same texts, copied rather than computed again
        del out
        out, done = _from_prefix(partial, note, total, prefixes[rows]), rows
    with tqdm(total=total, initial=done, desc="teacher", unit="text", smoothing=0.05) as bar:
        start = done
        for chunk in chunked(itertools.islice(texts, done, None), CHUNK):
            logits = np.asarray(predictor.logits(chunk, batch_size=batch_size), dtype=np.float32)
            if out is None:
                out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(total, logits.shape[1]))
            out[start:start + len(logits)] = logits
            out.flush()
            start += len(logits)
            write_text_atomic(note, str(start))
            bar.update(len(logits))
    del out
    partial.replace(target)
    note.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


def _cached_lengths(folder: Path) -> dict[int, list[Path]]:
    """Row count -> the finished cache files of that many rows (their headers read, not their rows)."""
    lengths: dict[int, list[Path]] = {}
    for path in sorted(folder.glob("*.npy")) if folder.is_dir() else ():
        if path.name.endswith(".partial.npy"):
            continue
        try:
            lengths.setdefault(np.load(path, mmap_mode="r").shape[0], []).append(path)
        except (OSError, ValueError):
            continue
    return lengths


def _from_prefix(partial: Path, note: Path, rows: int, source_path: Path) -> np.ndarray:
    """A new temporary logits file of ``rows`` rows that starts with ``source_path``'s, noted as done so far."""
    from numpy.lib.format import open_memmap

    source = np.load(source_path, mmap_mode="r")
    out = open_memmap(partial, mode="w+", dtype=np.float32, shape=(rows, source.shape[1]))
    out[:len(source)] = source
    out.flush()
    write_text_atomic(note, str(len(source)))
    print(f"nlp-transfer: the teacher's logits of the first {len(source):,} texts come from the cached "
          f"{source_path.name}", file=sys.stderr)
    return out


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
    """Replace the training split with its rows plus the teacher-only texts, each with ``soft_labels``, written
    through the Arrow cache (memory flat in the number of rows); what the run records of it goes to ``data.teacher``
    (metrics.json: ``teacher``)."""
    from .data.chunks import Shard
    from .inference import load_model
    from .runtime import Runtime

    strategy, source = recipe.strategy, recipe.source or "recipe"
    if recipe.class_weights is not None:
        raise NLPTransferError(f"{source}: class_weights do not apply to strategy distill (the teacher's "
                               f"probabilities are the targets); remove class_weights")
    shard = Shard.current()  # under accelerate launch each process puts the teacher on its own GPU
    predictor = load_model(strategy.teacher, device=shard.local_device(Runtime.resolve("auto").device))
    names = list(getattr(predictor, "label_names", []) or [])
    if names != list(data.label_names):
        raise NLPTransferError(f"{source}: the teacher {strategy.teacher} predicts labels {names}, the data has "
                               f"{list(data.label_names)}; distil from a teacher trained on the same labels")
    rows = data.splits[recipe.train_split]
    # the unlabelled file is read as `predict --input` reads one
    texts = TeacherTexts(Column(rows), strategy.unlabelled, strategy.augment,
                         {"mask_prob": strategy.mask_prob, "ngram_prob": strategy.ngram_prob,
                          "mask_token": _mask_token(predictor), "seed": strategy.augment_seed})
    extra = len(texts) - len(rows)
    if shard.is_main:
        print(f"nlp-transfer: teacher {strategy.teacher} labels {len(rows)} training rows"
              + (f" and {extra} more texts" if extra else ""), file=sys.stderr, flush=True)
    with shard.main_first():  # under accelerate launch the main process scores, the others read the cache
        logits = teacher_logits(strategy.teacher, predictor, texts)
    agreement = _agreement(logits, Column(rows, "label"))
    if shard.is_main:
        print(f"nlp-transfer: the teacher agrees with {agreement:.1%} of the training labels", file=sys.stderr,
              flush=True)
    data.splits[recipe.train_split] = _distilled_split(rows, texts, logits, strategy.temperature)
    data.teacher = {"folder": str(strategy.teacher), "labelled_rows": len(rows), "teacher_only_rows": extra,
                    "augment": strategy.augment, "augment_seed": strategy.augment_seed,
                    "agreement_with_training_labels": round(agreement, 4), "temperature": strategy.temperature,
                    "soft_weight": strategy.soft_weight}


def _agreement(logits: np.ndarray, labels: Column) -> float:
    """The share of training rows whose gold label is the teacher's argmax (the first ``len(labels)`` logits)."""
    from .data.chunks import chunked

    hits, start = 0, 0
    for part in chunked(labels, CHUNK):
        hits += int(np.sum(np.argmax(logits[start:start + len(part)], axis=1) == np.asarray(part)))
        start += len(part)
    return hits / start if start else 0.0


def _distilled_split(rows, texts: TeacherTexts, logits: np.ndarray, temperature: float):
    """The training rows (gold labels kept) then the teacher-only texts (label -100, line 0), each with its softened
    teacher probabilities, as a `datasets.Dataset` memory-mapped from the Arrow cache (keyed by the teacher's logits
    file, the rows' labels and lines, and the temperature)."""
    from .data.arrow_cache import cached_split
    from .data.chunks import chunked, dataset_rows

    def identity() -> dict[str, Any]:
        digest = hashlib.blake2b(digest_size=16)
        for label, line in dataset_rows(rows, ["label", "line"], CHUNK):
            digest.update(f"{label},{line};".encode())
        return {"distilled": Path(logits.filename).name, "rows": digest.hexdigest(), "temperature": temperature}

    def distilled() -> Iterator[dict[str, Any]]:
        gold = dataset_rows(rows, ["label", "line"], CHUNK)
        start = 0
        for part in chunked(texts, CHUNK):
            soft = softened(logits[start:start + len(part)], temperature)
            start += len(part)
            for text, probabilities in zip(part, soft.tolist()):
                label, line = next(gold, (UNLABELLED, 0))
                yield {"text": text, "label": int(label), "line": int(line), "soft_labels": probabilities}

    return cached_split(identity, distilled, "strategy distill: no rows to train on", name="train + teacher",
                        total=lambda: len(texts))
