"""Shared fixtures: tiny real models (2 layers, hidden 32) with real tokenizers trained here.

- ``tiny_bert``: BERT with a WordPiece tokenizer (uncased, [CLS]/[SEP], token_type_ids).
- ``tiny_xlmr``: XLM-R style model with a SentencePiece-like Unigram tokenizer (<s>/</s>, no token types).
Both are saved as safetensors directories, exactly like a downloaded checkpoint.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = REPO / "samples" / "sst2" / "train.tsv"
SAMPLE_DEV = REPO / "samples" / "sst2" / "dev.tsv"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

EXTRA_TEXT = [
    "Angela Merkel visited Paris on Monday.", "Der Hund läuft schnell über die Straße.",
    "Москва — столица России.", "東京は日本の首都です。", "مرحبا بالعالم", "café naïve résumé",
]


def corpus() -> list[str]:
    lines = SAMPLE_TRAIN.read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0].strip() for line in lines] + EXTRA_TEXT * 5


def build_tiny_bert(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=1200, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.token_to_id("[PAD]"))
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_xlmr(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus(), trainers.UnigramTrainer(vocab_size=1500, special_tokens=specials, unk_token="<unk>"))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                        model_max_length=128)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                              pad_token_id=tok.token_to_id("<pad>"), bos_token_id=bos, eos_token_id=eos)
    import torch

    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_roberta(path: Path) -> Path:
    """RoBERTa style: byte-level BPE (pre-split words need add_prefix_space=True)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=1200, special_tokens=specials,
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                      add_prefix_space=False, trim_offsets=True)
    tokenizer = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                     cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                     model_max_length=128)
    config = RobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=tok.token_to_id("<pad>"), bos_token_id=tok.token_to_id("<s>"),
                           eos_token_id=tok.token_to_id("</s>"))
    import torch

    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    return build_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> Path:
    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


def write_card(folder: Path, name: str = "toy", **front) -> Path:
    """Write a data card whose front matter is ``front`` (YAML)."""
    import yaml

    front = {"name": name, "task": "sequence-classification", **front}
    path = folder / f"{name}.md"
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n# toy card\n", encoding="utf-8")
    return path


TOPIC_WORDS = {"sports": "match goal team", "politics": "vote election minister", "science": "atom cell experiment"}


def topic_rows(count: int, seed: int = 0, noise: bool = False) -> list[str]:
    """JSONL rows of a learnable multi-label task: each topic present with probability 1/2 (science when none), the
    text its words (after two filler words with ``noise``), ``tags`` the topics."""
    import json

    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        chosen = [name for name in TOPIC_WORDS if rng.random() < 0.5] or ["science"]
        words = " ".join(TOPIC_WORDS[name] for name in chosen)
        if noise:
            words = " ".join(rng.choice(["the", "a", "today", "news"], 2)) + " " + words
        rows.append(json.dumps({"text": words, "tags": chosen}))
    return rows


def topic_card(folder: Path) -> Path:
    """A multi-label card over 120 `topic_rows` (validation: the first 40 of them)."""
    rows = topic_rows(120)
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "dev.jsonl").write_text("\n".join(rows[:40]) + "\n")
    return write_card(folder, "topics", splits={"train": "train.jsonl", "validation": "dev.jsonl"}, label="tags",
                      problem_type="multi_label")


def sample_rows(path: Path, count: int, seed: int = 0) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    rows = [tuple(line.rsplit("\t", 1)) for line in lines]
    return random.Random(seed).sample(rows, count)


def write_sst2_card(folder: Path, train_rows: int = 160, dev_rows: int = 64, name: str = "sst2-toy") -> Path:
    """A small real SST-2 card in ``folder``: rows sampled from the shipped sample (seeded)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, source, count in (("train.tsv", SAMPLE_TRAIN, train_rows), ("dev.tsv", SAMPLE_DEV, dev_rows)):
        rows = sample_rows(source, count)
        (folder / file_name).write_text("sentence\tlabel\n" + "\n".join(f"{s}\t{l}" for s, l in rows) + "\n",
                                        encoding="utf-8")
    return write_card(folder, name, splits={"train": "train.tsv", "validation": "dev.tsv"}, format="tsv",
                      text="sentence", label="label", labels=["negative", "positive"], license="research-only")


@pytest.fixture()
def feature_cache(tmp_path, monkeypatch) -> Path:
    """NLP_TRANSFER_CACHE in tmp_path, so the probe's cached features stay in the test; returns the features folder."""
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


@pytest.fixture()
def sst2_toy(tmp_path) -> Path:
    """A small real SST-2 card: 160 training rows from the shipped sample, 64 dev sentences."""
    return write_sst2_card(tmp_path / "data")


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (hidden ones too): what a failing command must leave byte-identical."""
    import hashlib

    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for folder in folders for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def cli_error(capsys, argv: list, progress_before: bool = False) -> str:
    """Run the CLI in-process; assert exit code 2, one ``error:`` line and no traceback; return that line.

    stderr must hold nothing else, unless ``progress_before`` (an error raised during training may follow the
    progress bars of the work before it; the error line is then the last one)."""
    from nlp_transfer.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2, captured.err
    assert len(errors) == 1, captured.err
    assert (captured.err.rstrip().endswith(errors[0]) if progress_before else lines == errors), captured.err
    assert "Traceback" not in captured.err + captured.out
    return errors[0]


CONLL_DIR = REPO.parent / "shared" / "data" / "conll2003"


def take_sentences(source: Path, target: Path, count: int) -> None:
    blocks = [b for b in source.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    target.write_text("\n\n".join(blocks[:count]) + "\n", encoding="utf-8")


@pytest.fixture()
def conll_toy(tmp_path) -> Path:
    """A small real CoNLL-2003 card (IOB2, 4 columns): 300 train, 60 validation, 60 test sentences."""
    if not CONLL_DIR.is_dir():  # research-only Reuters text: read from ../shared, never shipped in the repo
        pytest.skip("../shared/data/conll2003 is not beside this checkout")
    folder = tmp_path / "conll"
    folder.mkdir()
    for name, count in (("train.txt", 300), ("valid.txt", 60), ("test.txt", 60)):
        take_sentences(CONLL_DIR / name, folder / name, count)
    return write_card(folder, "conll-toy", task="token-classification",
                      splits={"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}, format="conll",
                      columns=["token", "pos", "chunk", "ner"], tags="ner")


def tiny_recipe(card: Path, model: Path, out: Path, **training) -> dict:
    """A recipe dict that trains a tiny model for a few seconds."""
    return {
        "task": "sequence-classification", "data": str(card), "model": str(model), "output_dir": str(out),
        "max_length": 48, "seed": 7,
        "training": {"num_train_epochs": 2, "per_device_train_batch_size": 16, "learning_rate": 1e-3,
                     "logging_steps": 5, "report_to": "none", "disable_tqdm": True, **training},
    }


def build_spm_xlmr(path: Path, vocab_size: int = 400) -> Path:
    """XLM-R style model whose only tokenizer file is a SentencePiece ``sentencepiece.bpe.model`` trained here
    (unigram, XLM-R's piece layout: <unk>=0, <s>=1, </s>=2) and a tokenizer_config.json naming the class; no
    tokenizer.json, so transformers must convert the .model itself."""
    import json

    import sentencepiece as spm
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    path.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), model_prefix=str(path / "sentencepiece.bpe"),
                                   vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
                                   num_threads=1, minloglevel=2)
    (path / "sentencepiece.bpe.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer",
                                                            "model_max_length": 128}), encoding="utf-8")
    # transformers' XLM-R layout: <s> <pad> </s> <unk>, the pieces after spm's three specials, then <mask>
    config = XLMRobertaConfig(vocab_size=vocab_size + 2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    XLMRobertaModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def spm_xlmr(tmp_path_factory) -> Path:
    return build_spm_xlmr(tmp_path_factory.mktemp("spm-xlmr"))
