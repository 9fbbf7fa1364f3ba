"""From a vocabulary and word vectors to an embedding matrix, with a coverage report.

    matrix, word_to_index, coverage = embedding_matrix(Counter(all_words), vectors, oov="random")
    print(coverage)   # Converted 14,000 words (1,200 misses); 97.1% of tokens covered

Row layout: 0 = padding (zeros), 1 = unknown word, then the vocabulary's words found in the vectors
(most frequent first), then its missing words (count >= ``min_count``; rarer ones share row 1), then,
with ``all_vectors``, every other word of the vectors (so words first met at prediction time still get
their pretrained vector). ``oov`` decides the missing words' rows (and row 1):

- ``zeros``: zero vectors;
- ``random``: normal with the vectors' standard deviation (seeded), fixed during training;
- ``learned``: the same random start, but trainable in the BiLSTM (``models.StaticEmbedding``); every
  other row stays frozen, bit for bit.

A missing word is then looked up lower-cased (``lowercase_fallback``); a missing hyphenated compound
(``writer-director``: GloVe 6B 100k lacks most compounds) gets the mean of its parts' vectors when every
part is found (``compound_fallback``); with fastText ``.bin`` vectors a missing word gets its subword
(n-gram) vector. All of these count as hits, each also counted on its own in the `Coverage`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NLPTransferError, did_you_mean

OOV_OPTIONS = ("random", "zeros", "learned")
PAD, UNK = 0, 1
PAD_WORD, UNK_WORD = "<pad>", "<unk>"


@dataclass
class Coverage:
    """How much of a vocabulary the vectors cover, by word type and by token count."""

    hits: int = 0  # word types found (exactly, lower-cased, or by subwords)
    misses: int = 0
    hit_tokens: int = 0
    tokens: int = 0
    lowercase_hits: int = 0  # found only through the lower-cased form
    compound_hits: int = 0  # hyphenated compounds built from their parts
    subword_hits: int = 0  # fastText .bin: built from character n-grams
    top_missing: list[tuple[str, int]] = field(default_factory=list)  # the 20 most frequent missing words

    @property
    def type_coverage(self) -> float:
        return self.hits / (self.hits + self.misses) if self.hits + self.misses else 0.0

    @property
    def token_coverage(self) -> float:
        return self.hit_tokens / self.tokens if self.tokens else 0.0

    def __str__(self) -> str:
        return (f"Converted {self.hits:,} words ({self.misses:,} misses); "
                f"{100 * self.token_coverage:.1f}% of tokens covered")

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "type_coverage": round(self.type_coverage, 6),
                "tokens": self.tokens, "hit_tokens": self.hit_tokens, "token_coverage": round(self.token_coverage, 6),
                "lowercase_hits": self.lowercase_hits, "compound_hits": self.compound_hits,
                "subword_hits": self.subword_hits,
                "top_missing": [[word, count] for word, count in self.top_missing], "summary": str(self)}


@dataclass
class EmbeddingMatrix:
    """The result of `embedding_matrix`; unpacks as ``matrix, word_to_index, coverage``."""

    matrix: np.ndarray  # [rows, dim] float32
    word_to_index: dict[str, int]
    coverage: Coverage
    oov_rows: np.ndarray  # the rows of the unknown word and the missing words (trainable with oov="learned")
    oov: str

    def __iter__(self):
        return iter((self.matrix, self.word_to_index, self.coverage))

    def lookup(self, tokens: list[str]) -> list[int]:
        """Row ids of ``tokens`` (unknown words -> row 1)."""
        index = self.word_to_index
        return [index.get(token, UNK) for token in tokens]


def _vector_of(vectors, word: str, lowercase_fallback: bool, compound_fallback: bool = True
               ) -> tuple[np.ndarray | None, str]:
    """(vector, how) with how in exact | lowercase | compound | subword | ''."""
    index = vectors.key_to_index
    if word in index:
        return vectors.vectors[index[word]], "exact"
    if lowercase_fallback and word.lower() in index:
        return vectors.vectors[index[word.lower()]], "lowercase"
    parts = [part for part in word.split("-") if part] if compound_fallback and "-" in word else []
    if len(parts) > 1:
        found = [_vector_of(vectors, part, lowercase_fallback, False)[0] for part in parts]
        if all(vector is not None for vector in found):
            return np.mean(found, axis=0).astype(np.float32), "compound"
    if hasattr(vectors, "vectors_ngrams") and word in vectors:  # FastTextKeyedVectors: n-gram composition
        return vectors.get_vector(word), "subword"
    return None, ""


def vectors_std(vectors) -> float:
    """Standard deviation of the vectors' values (over at most 100k rows)."""
    sample = np.asarray(vectors.vectors[:100_000], dtype=np.float64)
    return float(sample.std()) if sample.size else 1.0


def embedding_matrix(vocab_counts: Counter, vectors, oov: str = "random", seed: int = 0, min_count: int = 1,
                     lowercase_fallback: bool = True, all_vectors: bool = False,
                     compound_fallback: bool = True) -> EmbeddingMatrix:
    """The embedding matrix of ``vocab_counts`` (word -> count) over ``vectors`` (gensim ``KeyedVectors``);
    see the module docstring for the row layout and the ``oov`` options."""
    if oov not in OOV_OPTIONS:
        raise NLPTransferError(f"oov '{oov}' is not supported{did_you_mean(oov, OOV_OPTIONS)} "
                               f"(choose from {', '.join(OOV_OPTIONS)})")
    if not isinstance(min_count, int) or min_count < 1:
        raise NLPTransferError(f"min_count must be a positive integer, got {min_count!r}")
    coverage = Coverage()
    found: list[tuple[str, np.ndarray]] = []
    missing: list[tuple[str, int]] = []
    for word, count in sorted(vocab_counts.items(), key=lambda item: (-item[1], item[0])):
        if word in (PAD_WORD, UNK_WORD):
            continue
        coverage.tokens += count
        vector, how = _vector_of(vectors, word, lowercase_fallback, compound_fallback)
        if vector is None:
            coverage.misses += 1
            missing.append((word, count))
            continue
        coverage.hits += 1
        coverage.hit_tokens += count
        coverage.lowercase_hits += how == "lowercase"
        coverage.compound_hits += how == "compound"
        coverage.subword_hits += how == "subword"
        found.append((word, vector))
    coverage.top_missing = missing[:20]
    own_rows = [word for word, count in missing if count >= min_count]
    extra = [w for w in vectors.index_to_key if w not in vocab_counts] if all_vectors else []
    dim = int(vectors.vector_size)
    matrix = np.zeros((2 + len(found) + len(own_rows) + len(extra), dim), dtype=np.float32)
    word_to_index = {PAD_WORD: PAD, UNK_WORD: UNK}
    for row, (word, vector) in enumerate(found, start=2):
        matrix[row] = vector
        word_to_index[word] = row
    first_missing = 2 + len(found)
    oov_rows = np.concatenate([[UNK], np.arange(first_missing, first_missing + len(own_rows))]).astype(np.int64)
    for row, word in enumerate(own_rows, start=first_missing):
        word_to_index[word] = row
    if oov != "zeros":
        generator = np.random.default_rng(seed)
        matrix[oov_rows] = generator.normal(0.0, vectors_std(vectors), (len(oov_rows), dim)).astype(np.float32)
    if extra:
        start = first_missing + len(own_rows)
        key_to_index = vectors.key_to_index
        matrix[start:] = vectors.vectors[[key_to_index[w] for w in extra]]
        word_to_index.update((word, row) for row, word in enumerate(extra, start=start))
    return EmbeddingMatrix(matrix, word_to_index, coverage, oov_rows, oov)
