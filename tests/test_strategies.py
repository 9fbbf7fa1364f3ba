"""Transfer strategies: frozen parameters stay bit-identical, trainable counts, layer-wise learning rates."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_recipe
from transformers import TrainerCallback

from nlp_transfer import NLPTransferError, train
from nlp_transfer.strategies import depth_of_parameters, layer_map


def initial_weights(model_dir):
    from transformers import AutoModel

    return {k: v.clone() for k, v in AutoModel.from_pretrained(model_dir).state_dict().items()}


def final_weights(out):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    return {k.removeprefix(model.base_model_prefix + "."): v for k, v in model.state_dict().items()}


def test_last_n_freezes_embeddings_and_lower_layers_bit_for_bit(sst2_toy, tiny_bert, tmp_path):
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    recipe["strategy"] = {"name": "last-n", "n": 1}
    metrics = train(recipe).metrics
    after = final_weights(tmp_path / "run")
    for name, value in before.items():
        if name.startswith(("embeddings.", "encoder.layer.0.")):
            assert torch.equal(after[name], value), name  # frozen: not one bit moved
    assert not torch.equal(after["encoder.layer.1.attention.self.query.weight"], before["encoder.layer.1.attention.self.query.weight"])
    layer1 = sum(v.numel() for k, v in before.items() if k.startswith("encoder.layer.1."))
    pooler = sum(v.numel() for k, v in before.items() if k.startswith("pooler."))
    head = 32 * 2 + 2
    assert metrics["params"]["trainable"] == layer1 + pooler + head


def test_feature_extraction_head_trains_only_the_head(sst2_toy, tiny_bert, tmp_path):
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    recipe["strategy"] = {"name": "feature-extraction", "probe": "head"}
    metrics = train(recipe).metrics
    after = final_weights(tmp_path / "run")
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert metrics["params"]["trainable"] == 32 * 2 + 2


def attach_callback(monkeypatch, callback):
    """Make the next `train` call's Trainer also run ``callback``; returns it."""
    import nlp_transfer.training as training

    build = training._build_trainer_class

    def with_callback():
        class Recording(build()):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(callback)

        return Recording

    monkeypatch.setattr(training, "_build_trainer_class", with_callback)
    return callback


class RecordLearningRates(TrainerCallback):
    """Reads the optimizer's groups after step 3."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step == 3:
            self.seen = [(group["depth"], group["lr"]) for group in optimizer.param_groups]


def test_layer_wise_learning_rates_follow_the_decay_formula(sst2_toy, tiny_bert, tmp_path, monkeypatch):
    recorder = attach_callback(monkeypatch, RecordLearningRates())
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=6, learning_rate=1e-3, warmup_steps=0)
    recipe["strategy"] = {"name": "full", "lr_decay": 0.5}
    train(recipe)
    assert sorted({d for d, _ in recorder.seen}) == [0, 1, 2]  # head + top layer, layer 0, embeddings
    schedule = (6 - 3) / 6  # linear decay, no warm-up, after 3 of 6 steps
    for depth, lr in recorder.seen:
        assert lr == pytest.approx(1e-3 * schedule * 0.5 ** depth, rel=1e-6)


def test_layer_discovery_across_architectures():
    from transformers import (AlbertConfig, AlbertModel, DistilBertConfig, DistilBertModel, RobertaConfig,
                              RobertaModel)

    small = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100)
    roberta = RobertaModel(RobertaConfig(num_hidden_layers=3, **small))
    assert len(layer_map(roberta).layers) == 3
    distil = DistilBertModel(DistilBertConfig(n_layers=2, dim=32, n_heads=2, hidden_dim=64, vocab_size=100))
    mapped = layer_map(distil)
    assert len(mapped.layers) == 2
    depth = depth_of_parameters(distil)
    assert {depth[id(p)] for p in mapped.embeddings.parameters()} == {2}
    albert = AlbertModel(AlbertConfig(num_hidden_layers=4, embedding_size=16, **small))
    with pytest.raises(NLPTransferError, match="cannot map the layers of a 'albert' model"):
        layer_map(albert)


def test_last_n_larger_than_the_model_is_an_error(sst2_toy, tiny_bert, tmp_path):
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run")
    recipe["strategy"] = {"name": "last-n", "n": 5}
    with pytest.raises(NLPTransferError, match="n must be between 0 and 2"):
        train(recipe)


class RecordLayer(TrainerCallback):
    """After every optimizer step: is the top layer trainable, and its query weight then."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        weight = model.base_model.encoder.layer[1].attention.self.query.weight
        self.steps.append((state.global_step, weight.requires_grad, weight.detach().clone()))


def test_gradual_unfreezing_opens_layers_on_schedule_and_they_then_move(sst2_toy, tiny_bert, tmp_path, monkeypatch):
    recorder = attach_callback(monkeypatch, RecordLayer())
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=8, learning_rate=1e-2)
    recipe["strategy"] = {"name": "gradual", "every": 3}
    train(recipe)
    opened = {step: trainable for step, trainable, _ in recorder.steps}
    assert [opened[s] for s in range(1, 9)] == [False, False, False, True, True, True, True, True]
    start = before["encoder.layer.1.attention.self.query.weight"]
    for step, _, weight in recorder.steps:
        assert torch.equal(weight, start) == (step <= 3)  # frozen until step 3, moving from the 4th update on
    after = final_weights(tmp_path / "run")
    assert not torch.equal(after["encoder.layer.0.attention.self.query.weight"],
                           before["encoder.layer.0.attention.self.query.weight"])  # opened at step 6
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("embeddings."))  # due at step 9


def test_lora_trains_adapters_and_head_and_merged_export_gives_the_same_logits(sst2_toy, tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from nlp_transfer import load_model
    from nlp_transfer.cli import main

    before = initial_weights(tiny_bert)
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, tiny_bert, out, num_train_epochs=1, learning_rate=1e-2)
    recipe["strategy"] = {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
    metrics = train(recipe).metrics
    lora = 2 * 2 * (4 * 32 + 32 * 4)  # 2 layers x (query, value) x (A: r x in + B: out x r)
    assert metrics["params"]["trainable"] == lora + 32 * 2 + 2  # adapters + the classification head
    texts = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés"]
    reloaded = load_model(out)
    adapter_logits = reloaded.logits(texts)
    rows = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert [p["label"] for p in reloaded.predict([r["text"] for r in rows])] == [r["predicted"] for r in rows]
    assert main(["export", str(out), "--merge", "--output", str(tmp_path / "merged")]) == 0
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")  # plain transformers
    assert merged.config.id2label == {0: "negative", 1: "positive"}
    merged_logits = load_model(tmp_path / "merged").logits(texts)
    np.testing.assert_allclose(merged_logits, adapter_logits, atol=1e-4)
    base = {k.removeprefix("bert."): v for k, v in merged.state_dict().items()}
    assert not torch.equal(base["encoder.layer.0.attention.self.query.weight"],
                           before["encoder.layer.0.attention.self.query.weight"])  # the adapter was folded in
    assert torch.equal(base["encoder.layer.0.attention.self.key.weight"], before["encoder.layer.0.attention.self.key.weight"])


class RecordGroups(TrainerCallback):
    """After every optimizer step: (role, depth, lr) of each optimizer group, and the top layer's state."""

    def __init__(self):
        self.lrs, self.layer = {}, {}

    def on_step_end(self, args, state, control, optimizer=None, model=None, **kwargs):
        self.lrs[state.global_step] = [(g["role"], g["depth"], g["lr"]) for g in optimizer.param_groups]
        weight = model.base_model.encoder.layer[1].attention.self.query.weight
        head = model.classifier.weight
        self.layer[state.global_step] = (weight.requires_grad, weight.detach().clone(), head.detach().clone())


def test_discriminative_groups_get_their_own_learning_rates(sst2_toy, tiny_bert, tmp_path, monkeypatch):
    recorder = attach_callback(monkeypatch, RecordGroups())
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=6, learning_rate=5e-4, warmup_steps=0)
    wanted = {"embeddings": 1e-4, "lower": 2e-4, "head": 1e-3}  # upper: not given, keeps learning_rate
    recipe["strategy"] = {"name": "full", "group_lrs": wanted}
    train(recipe)
    seen = recorder.lrs[3]
    assert {role for role, _, _ in seen} == {"embeddings", "lower", "upper", "head"}
    for role, depth, lr in seen:  # tiny BERT: layer 0 is the lower half, layer 1 the upper
        assert depth == {"embeddings": 2, "lower": 1, "upper": 0, "head": 0}[role]
        assert lr == pytest.approx(wanted.get(role, 5e-4) * (6 - 3) / 6, rel=1e-6)


def test_discriminative_groups_reject_unknown_groups_and_lr_decay_together(sst2_toy, tiny_bert, tmp_path):
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run")
    recipe["strategy"] = {"name": "full", "group_lrs": {"uper": 1e-4}}
    with pytest.raises(NLPTransferError, match="unknown group 'uper'.*did you mean 'upper'"):
        train(recipe)
    recipe["strategy"] = {"name": "full", "group_lrs": {"upper": 1e-4}, "lr_decay": 0.9}
    with pytest.raises(NLPTransferError, match="either lr_decay or group_lrs"):
        train(recipe)


def test_two_stage_trains_the_head_alone_then_everything_at_the_lower_rate(sst2_toy, tiny_bert, tmp_path, monkeypatch):
    recorder = attach_callback(monkeypatch, RecordGroups())
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=8, learning_rate=1e-3, warmup_steps=0)
    recipe["strategy"] = {"name": "full", "head_warmup_steps": 3, "head_lr": 1e-2}
    metrics = train(recipe).metrics
    start = before["encoder.layer.1.attention.self.query.weight"]
    for step in range(1, 9):
        trainable, weight, _ = recorder.layer[step]
        assert trainable == (step > 3), step  # opened at the start of step 4
        assert torch.equal(weight, start) == (step <= 3), step  # frozen while the head warms up, then moves
    heads = [recorder.layer[step][2] for step in (1, 2, 3)]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])  # the head trains in stage 1
    for step in (1, 2):  # stage 1: the head at head_lr, the encoder at 0
        for role, _, lr in recorder.lrs[step]:
            assert lr == pytest.approx(1e-2 if role == "head" else 0.0)
    for step in (3, 5):  # stage 2: everything at learning_rate under a linear decay over the remaining 5 steps
        for role, _, lr in recorder.lrs[step]:
            assert lr == pytest.approx(1e-3 * (5 - (step - 3)) / 5, rel=1e-6)
    assert metrics["params"]["trainable"] == sum(v.numel() for v in before.values()) + 32 * 2 + 2


def test_two_stage_with_last_n_opens_only_the_top_layers(sst2_toy, tiny_bert, tmp_path):
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=6, learning_rate=1e-2)
    recipe["strategy"] = {"name": "last-n", "n": 1, "head_warmup_steps": 2}
    train(recipe)
    after = final_weights(tmp_path / "run")
    for name, value in before.items():
        if name.startswith(("embeddings.", "encoder.layer.0.")):
            assert torch.equal(after[name], value), name
    assert not torch.equal(after["encoder.layer.1.output.dense.weight"], before["encoder.layer.1.output.dense.weight"])


def test_head_warmup_is_refused_where_it_has_no_meaning(sst2_toy, tiny_bert, tmp_path):
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=4)
    recipe["strategy"] = {"name": "lora", "head_warmup_steps": 2}
    with pytest.raises(NLPTransferError, match="no head warm-up stage"):
        train(recipe)
    recipe["strategy"] = {"name": "full", "head_warmup_steps": 4}
    with pytest.raises(NLPTransferError, match="as long as the whole run"):
        train(recipe)
