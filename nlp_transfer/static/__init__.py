"""Static word vectors (GloVe, word2vec, fastText) and the frozen baselines built on them.

    from nlp_transfer.static import load_vectors, most_similar, words, embedding_matrix
"""
from .matrix import Coverage, EmbeddingMatrix, embedding_matrix
from .vectors import analogy, load_vectors, most_similar
from .words import words

__all__ = ["Coverage", "EmbeddingMatrix", "analogy", "embedding_matrix", "load_vectors", "most_similar", "words"]
