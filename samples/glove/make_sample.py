"""Write the GloVe rows the shipped SST-2 sample needs (run from the repository root):

    python samples/glove/make_sample.py ../shared/data/glove/glove.6B.50d.100k.txt.gz

Keeps, in the original frequency order, every row of the 100k-word 50-d GloVe file whose word occurs in
samples/sst2/{train,dev}.tsv as tokenized by `nlp_transfer.static.words` (lower-cased), and writes
samples/glove/glove.6B.50d.sst2-sample.txt.gz. GloVe is PDDL 1.0 (see SOURCE.md beside this script).
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

from nlp_transfer.io import atomic_open
from nlp_transfer.static.words import words

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "sst2"
OUT = HERE / "glove.6B.50d.sst2-sample.txt.gz"


def main(source: str) -> None:
    vocabulary = set()
    for name in ("train.tsv", "dev.tsv"):
        for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines()[1:]:
            vocabulary.update(words(line.rsplit("\t", 1)[0], lowercase=True))
    kept = []
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.split(" ", 1)[0] in vocabulary:
                kept.append(line)
    with atomic_open(OUT, binary=True) as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write("".join(kept).encode("utf-8"))
    print(f"{len(kept):,} of {len(vocabulary):,} sample words found -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[1].parent / "shared/data/glove/glove.6B.50d.100k.txt.gz"))
