"""Smoke tests on the real packaged all-MiniLM-L6-v2 (installed by `make setup`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_recipe

from nlp_transfer import NLPTransferError, load_model, train
from nlp_transfer.models import load_tokenizer, resolve


def test_minilm_alias_resolves_to_the_packaged_model():
    path = Path(resolve("minilm-l6"))
    assert (path / "model.safetensors").is_file()
    config = json.loads((path / "config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["hidden_size"] == 384
    tokenizer = load_tokenizer("minilm-l6")
    assert tokenizer.convert_ids_to_tokens(tokenizer("Unflinchingly bleak")["input_ids"])[0] == "[CLS]"


def test_minilm_fine_tunes_a_few_steps_and_predicts(sst2_toy, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, "minilm-l6", out, max_steps=6, learning_rate=5e-5)
    result = train(recipe)
    assert result.metrics["params"]["total"] > 22_000_000
    assert result.metrics["train"]["global_step"] == 6
    prediction = load_model(out).predict("a gorgeous , witty , seductive movie .")
    assert prediction["label"] in ("negative", "positive")


def test_unreachable_hub_id_fails_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NLPTransferError, match="Hub cannot be reached.*hf download some-org/some-model --local-dir DIR"):
        resolve("some-org/some-model")
