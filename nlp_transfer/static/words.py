"""The one word tokenizer of the static baselines: text -> the words GloVe / word2vec were trained on.

    >>> words("The movie's ending wasn't good... (3.5/10, U.S. release)")
    ['the', 'movie', "'s", 'ending', 'was', "n't", 'good', '...', '(', '3.5/10', ',', 'u.s.', 'release', ')']

GloVe 6B was trained on Stanford-tokenized (PTB-style), lower-cased text, so its vocabulary has ``'s``,
``n't``, ``u.s.``, ``1,000``, ``...`` and every punctuation mark as separate words. This tokenizer
reproduces the parts of that scheme that matter for lookups:

- split on whitespace; every punctuation mark is its own word (``good.`` -> ``good``, ``.``), except
  runs of dots or dashes (``...``, ``--``) and PTB quotes (`````` ``, ``''``);
- clitics come off their word as PTB does: ``movie's`` -> ``movie``, ``'s``; ``don't`` -> ``do``,
  ``n't``; ``can't`` -> ``ca``, ``n't``; already split text (SST-2's ``it 's``, ``does n't``) is kept;
- hyphenated words (``well-known``), inner apostrophes (``o'clock``), numbers with separators
  (``1,000``, ``3.5``, ``10:30``, ``1/2``) and letter abbreviations (``u.s.``, ``e.g.``) stay whole;
- ``lowercase`` (default) because GloVe 6B and most word2vec/fastText English vectors used here are
  uncased; pass ``lowercase=False`` for cased vectors.

Every static baseline (and the coverage report) goes through ``words``; the CoNLL tagger uses the card's
own tokens instead, since they are already words.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"""
      n't | '(?:s|re|ve|ll|d|m)(?!\w)          # a clitic that is already separate (PTB text: "it 's")
    | (?:[^\W\d_]\.){2,}                        # letter abbreviations: u.s. e.g.
    | \d+(?:[.,:/]\d+)*(?!\w)                   # numbers: 3.5 1,000 10:30 1/2
    | \w+(?:[-'&]\w+)*                          # words, with inner hyphens / apostrophes / ampersands
    | \.{2,} | -{2,} | `` | ''                  # ellipses, dashes and PTB quotes stay whole
    | [^\w\s]                                   # any other mark on its own
""", re.VERBOSE)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def words(text: str, lowercase: bool = True) -> list[str]:
    """The words of ``text`` as the static vectors spell them (see the module docstring)."""
    text = text.translate(_APOSTROPHES)
    if lowercase:
        text = text.lower()
    out: list[str] = []
    for token in _TOKEN.findall(text):
        split = _CLITIC.match(token) if "'" in token else None
        if split and split.group(1) and not split.group(1).endswith("'"):
            out += [split.group(1), split.group(2)]
        else:
            out.append(token)
    return out
