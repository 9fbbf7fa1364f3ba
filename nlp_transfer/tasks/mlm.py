"""Masked-language-model training on unlabelled text: domain-adaptive pretraining before fine-tuning.

    # recipes/sst2_mlm.yaml
    task: masked-lm
    data: data_cards/sst2_text.md      # a card with task: text (or the texts of a classification card)
    model: minilm-l6
    mlm_probability: 0.15
    whole_word_mask: true              # mask every piece of a chosen word, not single word pieces
    output_dir: runs/sst2-mlm

then ``model: runs/sst2-mlm`` in a classification or NER recipe starts from the adapted encoder.

Masking is transformers' `DataCollatorForLanguageModeling` (80% [MASK], 10% random, 10% kept; with whole-word
masking, words are found from the tokenizer's offsets and every piece of a chosen word becomes [MASK]). The held-out split is masked *once*, with the recipe's seed, so the
perplexity before training and after it are measured on exactly the same masked tokens. Perplexity is
exp(mean cross-entropy over the masked tokens).

Encoders fine-tuned for sentences (such as all-MiniLM-L6-v2) ship without their MLM head; it is then created
fresh, and the "before" perplexity measures an untrained head, not the encoder. A run with
``strategy: {name: feature-extraction, probe: head}`` trains the head alone on the frozen encoder and gives the
fair starting point. The saved model keeps the base model's weights that the MLM model has no use for (BERT's
pooler), so a classifier started from it gets the same pooler as one started from the original model.
"""
from __future__ import annotations

import math
from typing import Any

MAIN_METRIC = "loss"
KEPT = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask", "offset_mapping", "length")


def main_metric(problem_type: str = "text") -> str:
    return MAIN_METRIC


def metric_names(problem_type: str = "text") -> tuple[str, ...]:
    return ("loss",)


def derived_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """Perplexity from the mean masked-token loss."""
    loss = scores.get("loss")
    return {"perplexity": math.exp(min(loss, 50.0))} if isinstance(loss, float) else {}


class MaskingCollator:
    """Training batches: pad, then mask with transformers' collator. Pre-masked batches (the held-out split, which
    carries ``labels``) are only padded.

    With ``batch_seeded`` (training), each batch's masks come from a generator seeded by ``seed`` and the batch's own
    token ids, not from the global random state: a run resumed from a checkpoint masks the batch it starts with as
    the uninterrupted run did (Trainer restores the global state only after fetching that batch), so the two end
    bit-identical. Every epoch orders the rows anew, so a row meets new batch-mates and new masks; only a batch
    repeated row for row gets the same masks."""

    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False, seed: int | None = None,
                 pad_to_multiple_of: int | None = None, batch_seeded: bool = False):
        from transformers import DataCollatorForLanguageModeling

        from ..data.adapters import DynamicPaddingCollator

        self.whole_word = whole_word
        self.batch_seed = seed if batch_seeded else None
        # whole words: transformers replaces every chosen piece with the mask token (no random/kept 10%)
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
        self._mask = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, whole_word_mask=whole_word,
                                                     seed=seed, pad_to_multiple_of=pad_to_multiple_of, **replace)
        self._pad_masked = DynamicPaddingCollator(tokenizer, pad_to_multiple_of, token_labels=True)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if "labels" in features[0]:
            return self._pad_masked(features)
        longest = max(len(f["input_ids"]) for f in features)
        if self._mask.pad_to_multiple_of:
            multiple = self._mask.pad_to_multiple_of
            longest = -(-longest // multiple) * multiple
        kept = []
        for feature in features:
            row = {k: v for k, v in feature.items() if k in KEPT and k not in ("length", "offset_mapping")}
            if self.whole_word:  # the collator needs offsets as one array: pad them with (0, 0)
                offsets = [list(pair) for pair in feature["offset_mapping"]]
                row["offset_mapping"] = offsets + [[0, 0]] * (longest - len(offsets))
            kept.append(row)
        if self.batch_seed is not None:
            self._seed_batch(kept)
        if not self.whole_word:
            return self._mask(kept)
        offsets = [row.pop("offset_mapping") for row in kept]
        import torch

        batch = self._mask.tokenizer.pad(kept, padding="max_length", max_length=longest, return_tensors="pt")
        special = batch.pop("special_tokens_mask")
        batch["input_ids"], batch["labels"] = self._mask.torch_mask_tokens(
            batch["input_ids"], special_tokens_mask=special, offset_mapping=torch.tensor(offsets))
        return batch


    def _seed_batch(self, rows: list[dict[str, Any]]) -> None:
        import hashlib

        import numpy as np

        digest = hashlib.blake2b(str(self.batch_seed).encode(), digest_size=8)
        for row in rows:
            digest.update(np.asarray(row["input_ids"], dtype=np.int64).tobytes() + b"|")
        self._mask.seed = int.from_bytes(digest.digest(), "little") >> 1  # a non-negative 63-bit seed
        self._mask.create_rng("pt")


def _encoder(tokenizer, max_length: int, whole_word: bool, text_pair: bool):
    """A batch of rows (columns text[, text_pair]) -> their token ids (with offsets for whole-word masking)."""
    def encode(batch):
        encoded = tokenizer(batch["text"], batch["text_pair"] if text_pair else None, truncation=True,
                            max_length=max_length, return_special_tokens_mask=True,
                            return_offsets_mapping=whole_word)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return encode


def _encode(dataset, tokenizer, max_length: int, whole_word: bool, desc: str):
    encode = _encoder(tokenizer, max_length, whole_word, "text_pair" in dataset.column_names)
    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=desc)


class TokenizedOnRead:
    """A split on disk (a memory-mapped Arrow cache, `data.arrow_cache`) tokenized row by row as training reads it.

    For corpora larger than memory: tokenizing the whole split first (`Dataset.map`) would read every page of the
    memory-mapped text into the process (its resident memory grows with the corpus) and the length-grouped sampler
    would hold every row's length in a list. Read on demand, a run of N steps touches N batches of rows, whatever
    the corpus size (the pages they mapped are handed back as it goes: `MappedPages`); a fast tokenizer takes about a
    millisecond for a batch, little next to a training step."""

    RELEASE_EVERY = 16  # rows read between hand-backs of the memory map's touched pages (`MappedPages`)

    def __init__(self, dataset, tokenizer, max_length: int, whole_word: bool):
        from ..data.arrow_cache import MappedPages

        self.dataset = dataset
        self.encode = _encoder(tokenizer, max_length, whole_word, "text_pair" in dataset.column_names)
        self.pages, self.read = MappedPages(dataset), 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset[int(index)]
        self.read += 1
        if self.read % self.RELEASE_EVERY == 0:
            self.pages.release()
        encoded = self.encode({key: [value] for key, value in row.items()})
        return {key: values[0] for key, values in encoded.items()}


def mask_once(dataset, tokenizer, probability: float, whole_word: bool, seed: int):
    """The held-out split with fixed masks (``input_ids`` masked, ``labels`` -100 except at masked tokens)."""
    import torch

    whole = MaskingCollator(tokenizer, probability, whole_word, seed=seed)
    inputs, labels = [], []
    for row in dataset:
        batch = whole([row])
        ids, lab = batch["input_ids"][0], batch["labels"][0]
        if not bool((lab != -100).any()):  # a short text drew no mask: mask its first real token
            real = [i for i, s in enumerate(row["special_tokens_mask"]) if not s]
            if real:
                lab = torch.full_like(lab, -100)
                lab[real[0]] = ids[real[0]]
                ids = ids.clone()
                ids[real[0]] = tokenizer.mask_token_id
        inputs.append(ids.tolist())
        labels.append(lab.tolist())
    columns = {"input_ids": inputs, "labels": labels, "attention_mask": [[1] * len(i) for i in inputs],
               "length": [len(i) for i in inputs]}
    if "token_type_ids" in dataset.column_names:
        columns["token_type_ids"] = dataset["token_type_ids"]
    import datasets

    return datasets.Dataset.from_dict(columns)


HEAD_ATTRIBUTES = ("cls", "lm_head")  # BERT-family / RoBERTa, XLM-R, MPNet: the MLM head as one module


def score_masked_tokens_only(model) -> bool:
    """Make ``model``'s forward compute vocabulary logits only at the masked positions when labels are given.

    A masked-LM forward normally scores every position against the whole vocabulary (30k-250k outputs per
    token) and then ignores the ~85% of positions that were not masked; that projection costs as much as the
    encoder itself for a small model. The loss is the same (mean cross-entropy over masked tokens); logits are
    not returned in training. Patched on the instance, so DDP and saving see an ordinary model. Returns False
    (and changes nothing) for architectures whose head is not one module."""
    import types

    import torch
    from transformers.modeling_outputs import MaskedLMOutput

    head = next((getattr(model, name) for name in HEAD_ATTRIBUTES if isinstance(getattr(model, name, None), torch.nn.Module)), None)
    if head is None:
        return False
    full_forward = model.forward

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if labels is None or kwargs:
            return full_forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                labels=labels, **kwargs)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.base_model(**inputs)[0]
        chosen = labels != -100
        if not bool(chosen.any()):
            return MaskedLMOutput(loss=hidden.sum() * 0.0)
        logits = head(hidden[chosen])
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[chosen])
        return MaskedLMOutput(loss=loss)

    model.forward = types.MethodType(forward, model)
    return True


def carry_over_base_weights(saved_dir, original: str, model, trust_remote_code: bool = False) -> list[str]:
    """Add the original base model's weights that the MLM model lacks (BERT's pooler) to the saved
    safetensors, so downstream heads start from them as they would from the original model."""
    from pathlib import Path

    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    from ..models import load_pretrained

    path = Path(saved_dir) / "model.safetensors"
    if not path.is_file():
        return []
    base = load_pretrained(AutoModel, original, trust_remote_code)
    have = set(model.base_model.state_dict())
    missing = {k: v for k, v in base.state_dict().items() if k not in have}
    if not missing:
        return []
    tensors = load_file(str(path))
    prefix = model.base_model_prefix
    added = []
    for key, value in missing.items():
        name = f"{prefix}.{key}"
        if name not in tensors:
            tensors[name] = value.detach().contiguous().clone()
            added.append(name)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)
    return added


def prepare(recipe, data, tokenizer, has_eval: bool):
    """Tokenize the texts, load the model with its masked-LM head, mask the held-out split once."""
    from transformers import AutoModelForMaskedLM

    from ..errors import NLPTransferError
    from ..models import load_pretrained
    from .base import Prepared

    if tokenizer.mask_token is None:
        raise NLPTransferError(f"model '{recipe.model}' has no mask token; masked-lm needs an encoder with one (BERT, XLM-R...)")
    if not 0 < recipe.mlm_probability < 1:
        raise NLPTransferError(f"{recipe.source}: mlm_probability must be between 0 and 1, got {recipe.mlm_probability!r}")
    whole = bool(recipe.whole_word_mask)
    collator = MaskingCollator(tokenizer, recipe.mlm_probability, whole, seed=recipe.seed, batch_seeded=True)
    train_split = data.splits[recipe.train_split]
    sampler = None
    if train_split.cache_files:  # on disk (data_storage: arrow): tokenized as read, shuffled without a permutation list
        from ..data.order import ScatteredOrder

        train_set = TokenizedOnRead(train_split, tokenizer, recipe.max_length, whole)
        sampler = ScatteredOrder(len(train_set), recipe.seed)
    else:
        train_set = _encode(train_split, tokenizer, recipe.max_length, whole, "tokenizing train")
    eval_set = None
    if has_eval:
        encoded = _encode(data.splits[recipe.eval_split], tokenizer, recipe.max_length, whole, "tokenizing eval")
        eval_set = mask_once(encoded, tokenizer, recipe.mlm_probability, whole, recipe.seed)
    model = load_pretrained(AutoModelForMaskedLM, recipe.model, recipe.trust_remote_code)
    score_masked_tokens_only(model)
    masked = sum(sum(1 for x in row if x != -100) for row in eval_set["labels"]) if eval_set is not None else 0
    return Prepared(
        train_set=train_set, eval_set=eval_set, model=model, metrics=None, main_metric=MAIN_METRIC, token_labels=True,
        summary=f"masked LM, {recipe.mlm_probability:.0%} of {'words' if whole else 'tokens'} masked"
                + (f", {masked} held-out masked tokens" if has_eval else ""),
        pipeline_tag="fill-mask", sidecar={"mlm_probability": recipe.mlm_probability, "whole_word_mask": whole},
        collator=collator, evaluate_before=True, train_sampler=sampler,
        after_save=lambda folder, model: carry_over_base_weights(folder, recipe.model, model, recipe.trust_remote_code),
    )
