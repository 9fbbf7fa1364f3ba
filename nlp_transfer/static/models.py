"""The static baselines' models and inputs, one definition used both to train them (`baselines`) and to load a
finished run (`predictors`): the frozen embedding, the BiLSTM classifier and tagger, the text / word encoders,
the averaged-vectors features and the length-sorted batched forward passes.

    model = BiLSTMClassifier(StaticEmbedding(matrix), config, outputs=2).to(device)
    logits = classifier_logits(model, TextEncoder(word_to_index, config)(texts), None, 2, device)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .matrix import UNK, EmbeddingMatrix
from .words import words

CASING = ("<pad>", "lower", "initial_cap", "all_caps", "numeric", "other")
PREDICT_BATCH = 256  # texts / sentences per forward pass when a run scores its evaluation split


# ---------------------------------------------------------------- inputs

class TextEncoder:
    """Texts -> row ids through `words` (truncated to ``max_length``; an empty text becomes one unknown word).
    ``config`` is a `StaticConfig` (``lowercase`` and ``max_length`` are read)."""

    def __init__(self, word_to_index: dict[str, int], config: Any):
        self.word_to_index, self.lowercase, self.max_length = word_to_index, config.lowercase, config.max_length

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        index = self.word_to_index
        return [[index.get(w, UNK) for w in words(text, self.lowercase)[: self.max_length]] or [UNK]
                for text in texts]


def word_shape(token: str) -> int:
    """Index in `CASING`: lower / initial_cap / all_caps / numeric / other."""
    if any(c.isdigit() for c in token) and all(c.isdigit() or c in ",.-/:" for c in token):
        return CASING.index("numeric")
    if token.islower():
        return CASING.index("lower")
    if token.isupper():
        return CASING.index("all_caps")
    if token[:1].isupper():
        return CASING.index("initial_cap")
    return CASING.index("other")


def tagger_inputs(sentences: Sequence[Sequence[str]], word_to_index: dict[str, int], lowercase: bool,
                  limit: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """The tagger's inputs for pre-split sentences: (row ids, word shapes), each sentence cut at ``limit`` words."""
    key = str.lower if lowercase else (lambda token: token)
    ids = [[word_to_index.get(key(t), UNK) for t in tokens[:limit]] for tokens in sentences]
    shapes = [[word_shape(t) for t in tokens[:limit]] for tokens in sentences]
    return ids, shapes


def pad(sequences: Sequence[Sequence[int]], value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(a [batch, longest] tensor padded with ``value``, the lengths)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max())), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return out, lengths


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Index batches of similar lengths (little padding): in training, shuffled pools of 50 batches sorted by
    length, then the batches in random order; for evaluation, everything sorted by length."""
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    pool = batch_size * 50 if rng is not None else max(len(lengths), 1)
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


# ---------------------------------------------------------------- averaged vectors

def average_features(id_lists: list[list[int]], matrix: np.ndarray, idf: np.ndarray | None,
                     quadratic: bool = False) -> np.ndarray:
    """Mean (or IDF-weighted mean) of each text's rows of ``matrix``, as one sparse product. With ``quadratic``
    each word contributes [v, v_i*v_j for i <= j] (second-order pooling): logistic regression on the average
    then scores each word by a quadratic function of its vector, not only a linear one."""
    from scipy.sparse import csr_matrix, diags

    lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int64, count=int(indptr[-1]))
    counts = csr_matrix((np.ones(len(indices), dtype=np.float64), indices, indptr),
                        shape=(len(id_lists), len(matrix)))
    counts.sum_duplicates()
    if idf is not None:
        counts = counts @ diags(idf)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    weights = (diags(1.0 / np.maximum(totals, 1e-12)) @ counts).tocsc().astype(np.float32)
    if not quadratic:
        return np.asarray(weights @ matrix, dtype=np.float32)
    used = np.unique(indices)  # expand only the rows these texts use
    rows = matrix[used]
    first, second = np.triu_indices(rows.shape[1])
    expanded = np.concatenate([rows, rows[:, first] * rows[:, second]], axis=1)
    return np.asarray(weights[:, used] @ expanded, dtype=np.float32)


def max_min_features(id_lists: list[list[int]], matrix: np.ndarray) -> np.ndarray:
    """[texts, 2 * dim]: each dimension's max, then its min, over a text's rows of ``matrix`` (zeros for a text
    without words)."""
    dim = matrix.shape[1]
    out = np.zeros((len(id_lists), 2 * dim), dtype=np.float32)
    lengths = np.fromiter((len(ids) for ids in id_lists), dtype=np.int64, count=len(id_lists))
    present = np.flatnonzero(lengths)
    if len(present):
        flat = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int64, count=int(lengths.sum()))
        rows = matrix[flat]
        starts = np.concatenate([[0], np.cumsum(lengths[present])[:-1]])
        out[present, :dim] = np.maximum.reduceat(rows, starts)
        out[present, dim:] = np.minimum.reduceat(rows, starts)
    return out


def text_features(ids: list[list[int]], pair_ids: list[list[int]] | None, matrix: np.ndarray,
                  idf: np.ndarray | None, quadratic: bool = False, pool_matrix: np.ndarray | None = None
                  ) -> np.ndarray:
    """The averaged-vectors baseline's features of texts (or text pairs: `pair_features` of both sides): the
    `average_features`, followed with ``pool_matrix`` by the `max_min_features` of its rows (mean-max-min)."""
    def side(id_lists: list[list[int]]) -> np.ndarray:
        x = average_features(id_lists, matrix, idf, quadratic)
        if pool_matrix is None:
            return x
        return np.concatenate([x, max_min_features(id_lists, pool_matrix)], axis=1)

    first = side(ids)
    return first if pair_ids is None else pair_features(first, side(pair_ids))


def pair_features(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A text pair's features from each side's: [u, v, |u-v|, u*v]."""
    return np.concatenate([first, second, np.abs(first - second), first * second], axis=1)


# ---------------------------------------------------------------- torch models

class StaticEmbedding(nn.Module):
    """An embedding table that is frozen except for ``learned_rows``.

    The frozen table is a parameter with ``requires_grad=False`` (counted in the model's size, never given
    to the optimizer); the learned rows live in their own small parameter and replace their frozen rows at
    lookup, so neither gradients nor weight decay can ever touch a frozen row. When every row learns
    (``static.train_vectors``), the table itself trains (``frozen`` is then a misnomer kept for the saved key)
    and there is no second copy; ``learned_rows`` then lists every row, which is how a saved model says so
    (8 bytes a row, 4% of a 50-dimensional table: kept so the weights alone rebuild the model)."""

    def __init__(self, matrix: np.ndarray, learned_rows: np.ndarray | None = None):
        super().__init__()
        weight = torch.as_tensor(np.array(matrix, dtype=np.float32))
        rows = torch.as_tensor(np.asarray(learned_rows if learned_rows is not None else [], dtype=np.int64))
        every = len(rows) == weight.shape[0]
        self.frozen = nn.Parameter(weight, requires_grad=every)
        self.register_buffer("learned_rows", rows)
        slot = torch.full((weight.shape[0],), -1, dtype=torch.long)
        slot[rows] = torch.arange(len(rows))
        self.register_buffer("slot", slot, persistent=False)  # row -> its position in `learned`, -1: frozen
        self.learned = nn.Parameter(weight[rows].clone()) if len(rows) and not every else None
        self.embedding_dim = int(weight.shape[1])

    @classmethod
    def from_matrix(cls, embedding: EmbeddingMatrix, train_all: bool = False) -> StaticEmbedding:
        """Learned rows: every row with ``train_all``, else the OOV rows with ``oov: learned``, else none."""
        if train_all:
            return cls(embedding.matrix, np.arange(len(embedding.matrix)))
        return cls(embedding.matrix, embedding.oov_rows if embedding.oov == "learned" else None)

    @classmethod
    def from_weights(cls, tensors: dict[str, np.ndarray], prefix: str = "embedding.") -> StaticEmbedding:
        """The embedding of a saved model (its ``state_dict`` as numpy arrays): the table and the learned rows."""
        return cls(tensors[prefix + "frozen"], tensors.get(prefix + "learned_rows"))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = nn.functional.embedding(ids, self.frozen)
        if self.learned is None:
            return out
        slots = self.slot[ids]
        learned = nn.functional.embedding(slots.clamp(min=0), self.learned)
        return torch.where((slots >= 0).unsqueeze(-1), learned, out)


def bilstm(input_size: int, config: Any) -> nn.LSTM:
    """The BiLSTM of both models: ``config.hidden`` units per direction, ``config.layers`` layers."""
    return nn.LSTM(input_size, config.hidden, num_layers=config.layers, bidirectional=True, batch_first=True,
                   dropout=config.dropout if config.layers > 1 else 0.0)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, padding_value: float = 0.0):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, (hidden, _) = lstm(packed)
    output, _ = pad_packed_sequence(output, batch_first=True, padding_value=padding_value, total_length=x.shape[1])
    return output, hidden


class BiLSTMClassifier(nn.Module):
    """Frozen vectors -> dropout -> BiLSTM -> max over time (or the last states) -> dropout -> linear.
    Sentence pairs are encoded by the same BiLSTM and combined as [u, v, |u-v|, u*v]."""

    def __init__(self, embedding: StaticEmbedding, config: Any, outputs: int, pairs: bool = False):
        super().__init__()
        self.embedding, self.pooling = embedding, config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = bilstm(embedding.embedding_dim, config)
        self.head = nn.Linear(2 * config.hidden * (4 if pairs else 1), outputs)

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embedding(ids))
        if self.pooling == "last":
            _, hidden = run_lstm(self.lstm, x, lengths)
            return torch.cat([hidden[-2], hidden[-1]], dim=-1)
        output, _ = run_lstm(self.lstm, x, lengths, padding_value=float("-inf"))
        return output.max(dim=1).values

    def forward(self, ids, lengths, pair_ids=None, pair_lengths=None) -> torch.Tensor:
        features = self.encode(ids, lengths)
        if pair_ids is not None:
            other = self.encode(pair_ids, pair_lengths)
            features = torch.cat([features, other, (features - other).abs(), features * other], dim=-1)
        return self.head(self.dropout(features))


class BiLSTMTagger(nn.Module):
    """[frozen word vector; trainable word-shape embedding] -> dropout -> BiLSTM -> dropout -> linear per token."""

    def __init__(self, embedding: StaticEmbedding, config: Any, labels: int):
        super().__init__()
        self.embedding = embedding
        self.casing = nn.Embedding(len(CASING), config.casing_dim, padding_idx=0) if config.casing_features else None
        width = embedding.embedding_dim + (config.casing_dim if config.casing_features else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = bilstm(width, config)
        self.head = nn.Linear(2 * config.hidden, labels)

    def forward(self, ids, shapes, lengths) -> torch.Tensor:
        x = self.embedding(ids)
        if self.casing is not None:
            x = torch.cat([x, self.casing(shapes)], dim=-1)
        output, _ = run_lstm(self.lstm, self.dropout(x), lengths)
        return self.head(self.dropout(output))


# ---------------------------------------------------------------- batched forward passes

def classifier_forward(model: BiLSTMClassifier, ids: list[list[int]], pair_ids: list[list[int]] | None,
                       batch: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """Logits of the texts ``batch`` indexes (padded, on ``device``)."""
    x, lengths = pad([ids[i] for i in batch])
    if pair_ids is None:
        return model(x.to(device), lengths)
    y, pair_lengths = pad([pair_ids[i] for i in batch])
    return model(x.to(device), lengths, y.to(device), pair_lengths)


def classifier_logits(model: BiLSTMClassifier, ids: list[list[int]], pair_ids: list[list[int]] | None,
                      outputs: int, device: str | torch.device, batch_size: int = PREDICT_BATCH,
                      progress=None) -> np.ndarray:
    """[texts, outputs] float32 logits in eval mode, batches sorted by length; ``progress``: a tqdm bar or None."""
    model.eval()
    logits = np.zeros((len(ids), outputs), dtype=np.float32)
    lengths = np.asarray([len(s) + (len(pair_ids[i]) if pair_ids else 0) for i, s in enumerate(ids)])
    with torch.inference_mode():
        for batch in length_batches(lengths, batch_size):
            logits[batch] = classifier_forward(model, ids, pair_ids, batch, device).detach().cpu().numpy()
            if progress is not None:
                progress.update(len(batch))
    return logits


def tagger_forward(model: BiLSTMTagger, ids: list[list[int]], shapes: list[list[int]], batch: np.ndarray,
                   device: str | torch.device) -> torch.Tensor:
    """[batch, longest, labels] logits of the sentences ``batch`` indexes (padded, on ``device``)."""
    x, lengths = pad([ids[i] for i in batch])
    s, _ = pad([shapes[i] for i in batch])
    return model(x.to(device), s.to(device), lengths)


def tagger_logits(model: BiLSTMTagger, ids: list[list[int]], shapes: list[list[int]],
                  device: str | torch.device, batch_size: int = PREDICT_BATCH, progress=None) -> list[np.ndarray]:
    """Per sentence a [words, labels] float32 array of logits in eval mode (empty sentences: [0, labels])."""
    model.eval()
    labels = model.head.out_features
    out = [np.zeros((0, labels), dtype=np.float32) for _ in ids]
    lengths = np.asarray([len(s) for s in ids])
    with torch.inference_mode():
        for batch in length_batches(np.maximum(lengths, 1), batch_size):
            if progress is not None:
                progress.update(len(batch))
            batch = batch[lengths[batch] > 0]
            if len(batch) == 0:
                continue
            logits = tagger_forward(model, ids, shapes, batch, device).float().detach().cpu().numpy()
            for row, i in enumerate(batch):
                out[i] = logits[row, : lengths[i]]
    return out
