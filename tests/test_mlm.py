"""Masked-LM (domain-adaptive pretraining): fixed held-out masks, whole-word masking, perplexity before/after,
the saved model as the start of a classifier."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_recipe, write_card

from nlp_transfer import NLPTransferError, train
from nlp_transfer.tasks.mlm import MaskingCollator, mask_once


@pytest.fixture()
def text_card(sst2_toy):
    """The toy SST-2 sentences as unlabelled text (task: text)."""
    return write_card(sst2_toy.parent, "sst2-text", task="text", splits={"train": "train.tsv", "validation": "dev.tsv"},
                      format="tsv", text="sentence", license="research-only")


def mlm_recipe(card, model, out, **training):
    recipe = tiny_recipe(card, model, out, **training)
    recipe["task"] = "masked-lm"
    return recipe


def encoded(tokenizer, texts, offsets=False):
    return [dict(tokenizer(t, return_special_tokens_mask=True, return_offsets_mapping=offsets)) for t in texts]


def test_masked_lm_lowers_held_out_perplexity_and_keeps_the_pooler(text_card, tiny_bert, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification, pipeline

    out = tmp_path / "mlm"
    metrics = train(mlm_recipe(text_card, tiny_bert, out, num_train_epochs=3, learning_rate=2e-3)).metrics
    assert metrics["task"] == "masked-lm" and metrics["main_metric"] == "loss"
    before, after = metrics["eval_before"], metrics["eval"]
    assert after["perplexity"] == pytest.approx(torch.tensor(after["loss"]).exp().item(), rel=1e-6)
    assert after["perplexity"] < before["perplexity"]  # same masked tokens, measured before and after
    fill = pipeline("fill-mask", model=str(out))
    assert len(fill("a [MASK] movie .")) == 5
    # the MLM model has no pooler; the saved weights keep the original one for downstream classifiers
    original = AutoModel.from_pretrained(tiny_bert).pooler.dense.weight
    downstream = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    assert torch.equal(downstream.bert.pooler.dense.weight, original)
    assert not torch.equal(downstream.bert.encoder.layer[0].output.dense.weight,
                           AutoModel.from_pretrained(tiny_bert).encoder.layer[0].output.dense.weight)  # adapted


def test_a_classifier_trains_from_the_adapted_encoder(text_card, sst2_toy, tiny_bert, tmp_path):
    train(mlm_recipe(text_card, tiny_bert, tmp_path / "mlm", num_train_epochs=1))
    metrics = train(tiny_recipe(sst2_toy, tmp_path / "mlm", tmp_path / "cls", num_train_epochs=1)).metrics
    assert metrics["model"] == str(tmp_path / "mlm") and 0.0 <= metrics["eval"]["accuracy"] <= 1.0


def test_held_out_masks_are_the_same_for_the_same_seed(tiny_bert, sst2_toy):
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = [line.split("\t")[0] for line in (sst2_toy.parent / "dev.tsv").read_text().splitlines()[1:]]
    rows = datasets.Dataset.from_list(encoded(tokenizer, texts))
    first, again = mask_once(rows, tokenizer, 0.15, False, seed=3), mask_once(rows, tokenizer, 0.15, False, seed=3)
    other = mask_once(rows, tokenizer, 0.15, False, seed=4)
    assert first["labels"] == again["labels"] and first["input_ids"] == again["input_ids"]
    assert first["labels"] != other["labels"]
    masked = sum(sum(1 for x in row if x != -100) for row in first["labels"])
    real = sum(sum(1 for s in row["special_tokens_mask"] if not s) for row in rows)
    assert 0.08 < masked / real < 0.25  # about 15% of the real tokens
    for row, labels in zip(rows, first["labels"]):
        assert any(x != -100 for x in labels)  # every held-out text scores at least one token
        for special, label in zip(row["special_tokens_mask"], labels):
            assert not (special and label != -100)  # [CLS]/[SEP] are never targets


def test_whole_word_masking_masks_every_piece_of_a_chosen_word(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = ["unforgettably overwrought melodramatics notwithstanding , the cinematographer triumphs"] * 40
    features = encoded(tokenizer, texts, offsets=True)
    assert any(t.startswith("##") for t in tokenizer.convert_ids_to_tokens(features[0]["input_ids"]))  # pieces exist
    torch.manual_seed(0)
    batch = MaskingCollator(tokenizer, 0.3, whole_word=True)(features)
    words = tokenizer(texts[0]).word_ids()
    partial = 0
    for labels in batch["labels"]:
        chosen = {words[i] for i, x in enumerate(labels.tolist()) if x != -100}
        for word in chosen:
            pieces = [i for i, w in enumerate(words) if w == word]
            partial += any(labels[i] == -100 for i in pieces)
    assert partial == 0
    assert (batch["labels"] != -100).sum() > 0


def test_masked_lm_recipe_errors(text_card, tiny_bert, conll_toy, tmp_path):
    recipe = mlm_recipe(text_card, tiny_bert, tmp_path / "run")
    recipe["test_split"] = "validation"
    with pytest.raises(NLPTransferError, match="masked-LM has no test_split"):
        train(recipe)
    with pytest.raises(NLPTransferError, match="recipe's task is masked-lm but .* holds token-classification"):
        train(mlm_recipe(conll_toy, tiny_bert, tmp_path / "run"))
    with pytest.raises(NLPTransferError, match="task is sequence-classification but .* holds text"):
        train(tiny_recipe(text_card, tiny_bert, tmp_path / "run"))


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_xlmr"])
def test_scoring_only_masked_tokens_gives_the_full_forwards_loss(fixture, request):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from nlp_transfer.tasks.mlm import score_masked_tokens_only

    folder = request.getfixturevalue(fixture)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(1)
    batch = MaskingCollator(tokenizer, 0.3)(encoded(tokenizer, ["a gorgeous , witty movie .", "the plot is thin", "ok"]))
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    expected = model(**batch).loss
    assert score_masked_tokens_only(model)
    got = model(**batch)
    assert got.logits is None
    assert got.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    no_labels = {k: v for k, v in batch.items() if k != "labels"}
    assert model(**no_labels).logits.shape[-1] == model.config.vocab_size  # without labels: the usual full output
