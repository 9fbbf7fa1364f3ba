"""Transfer strategies: frozen parameters stay bit-identical, trainable counts, layer-wise learning rates; the
registry of strategy objects, their own options and descriptions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import cli_error, tiny_recipe
from transformers import TrainerCallback

from nlp_transfer import NLPTransferError, load_recipe, strategy_configs, train
from nlp_transfer.checks import checked
from nlp_transfer.analysis.compare import strategy_note
from nlp_transfer.strategies import depth_of_parameters, layer_map
from nlp_transfer.strategy_configs import Strategy, build_strategy, describe_saved, register


def initial_weights(model_dir):
    from transformers import AutoModel

    return {k: v.detach().to("cpu", copy=True) for k, v in AutoModel.from_pretrained(model_dir).state_dict().items()}


def final_weights(out):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    return {k.removeprefix(model.base_model_prefix + "."): v.cpu() for k, v in model.state_dict().items()}


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


def test_feature_extraction_head_trains_only_the_pooler_and_head(sst2_toy, tiny_bert, tmp_path):
    before = initial_weights(tiny_bert)
    recipe = tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    recipe["strategy"] = {"name": "feature-extraction", "probe": "head"}
    metrics = train(recipe).metrics
    after = final_weights(tmp_path / "run")
    for name, value in before.items():
        if name.startswith("pooler."):
            assert not torch.equal(after[name], value), name  # the pooler is part of the head
        else:
            assert torch.equal(after[name], value), name  # embeddings and every layer: not one bit moved
    pooler = sum(v.numel() for k, v in before.items() if k.startswith("pooler."))
    assert metrics["params"]["trainable"] == pooler + 32 * 2 + 2


def attach_callback(monkeypatch, callback):
    """Make the next `train` call's Trainer also run ``callback``; returns it."""
    import nlp_transfer.backends.trainer as trainer_backend

    build = trainer_backend.trainer_class

    def with_callback():
        class Recording(build()):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(callback)

        return Recording

    monkeypatch.setattr(trainer_backend, "trainer_class", with_callback)
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
        # a CPU copy: on a GPU machine the trained model lives on CUDA, the snapshots it is compared with on the CPU
        self.steps.append((state.global_step, weight.requires_grad, weight.detach().to("cpu", copy=True)))


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
    assert metrics["params"]["trainable"] == lora + 32 * 32 + 32 + 32 * 2 + 2  # adapters + pooler + classifier
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
    base = {k.removeprefix("bert."): v.cpu() for k, v in merged.state_dict().items()}
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
        self.layer[state.global_step] = (weight.requires_grad, weight.detach().to("cpu", copy=True),
                                         head.detach().to("cpu", copy=True))  # CPU copies, as in RecordLayer


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


# ---------------------------------------------------------------- strategies as registered objects

ROOT = Path(__file__).parents[1]


def test_the_registry_holds_the_seven_strategies_each_with_only_its_own_options():
    assert list(strategy_configs.STRATEGIES) == ["full", "feature-extraction", "last-n", "gradual", "lora",
                                                 "contrastive", "distill"]
    rates = ("lr_decay", "group_lrs")
    warmup = ("head_warmup_steps", "head_warmup_epochs", "head_lr")
    options = {name: cls.options() for name, cls in strategy_configs.STRATEGIES.items()}
    assert options == {"full": rates + warmup, "feature-extraction": ("probe", "pooling", "layers", "normalize"),
                       "last-n": ("n",) + rates + warmup, "gradual": ("every",) + rates,
                       "lora": ("r", "alpha", "dropout", "target_modules", "pooler"),
                       "contrastive": ("iterations", "max_pairs", "epochs", "batch_size", "learning_rate", "pooling",
                                       "loss", "end_to_end", "end_to_end_epochs", "normalize", "C"),
                       "distill": ("teacher", "temperature", "soft_weight", "unlabelled", "augment", "augment_seed",
                                   "mask_prob", "ngram_prob") + rates + warmup}
    lora = build_strategy({"name": "lora", "r": 4})
    assert lora.name == "lora" and lora.to_dict() == {"name": "lora", "r": 4, "alpha": 16, "dropout": 0.1,
                                                      "target_modules": None, "pooler": True}
    assert build_strategy("last-n").n == 2  # a bare name takes the defaults
    assert build_strategy({"name": "feature-extraction"}).backend == "probe"
    assert build_strategy({"name": "feature-extraction", "probe": "head"}).backend == "trainer"
    assert build_strategy("contrastive").backend == "probe"


@pytest.mark.parametrize("values, text", [
    ({"name": "full"}, ""),
    ({"name": "full", "lr_decay": 0.8}, "lr decay 0.8"),
    ({"name": "last-n", "n": 3, "head_warmup_epochs": 1}, "n 3, head warmup epochs 1"),
    ({"name": "full", "group_lrs": {"embeddings": 2e-5, "head": 1e-3}}, "group lrs 2e-05/0.001"),
    ({"name": "gradual", "every": 100}, "every 100"),
    ({"name": "gradual"}, "every epoch"),
    ({"name": "lora", "r": 16, "alpha": 32}, "r 16"),
    ({"name": "feature-extraction", "probe": "head", "pooling": "cls"}, "probe head"),
])
def test_describe_names_the_options_that_tell_runs_apart(values, text):
    assert build_strategy(values).describe() == text
    assert strategy_note({"strategy": values}) == text  # compare's strategy cell


def test_old_flat_strategy_mappings_still_load_and_describe():
    """Runs saved before strategies had their own options wrote every strategy's keys into recipe.yaml."""
    flat = {"name": "last-n", "probe": "logistic", "pooling": "mean", "layers": [-1], "normalize": False, "n": 2,
            "every": "epoch", "r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None, "lr_decay": 0.9,
            "group_lrs": None, "head_warmup_steps": None, "head_warmup_epochs": None, "head_lr": 0.001}
    assert describe_saved(flat) == "n 2, lr decay 0.9"
    recipe = load_recipe({"data": "card.md", "strategy": flat})  # `nlp-transfer train old-run/recipe.yaml`
    assert recipe.strategy == build_strategy({"name": "last-n", "n": 2, "lr_decay": 0.9})
    assert load_recipe({"data": "card.md", "strategy": flat}, ["strategy.name=lora"]).strategy.r == 8
    assert load_recipe(recipe).strategy == recipe.strategy  # to_dict -> strategy: mapping -> the same object
    assert describe_saved({"name": "no-such-strategy"}) == "" and strategy_note({"strategy": 3}) == ""


@pytest.mark.parametrize("recipe_text, overrides, expected", [
    ("strategy: {name: lora, n: 2}\n", [],
     "strategy.n: strategy lora has no option 'n' (its options: r, alpha, dropout, target_modules, pooler); "
     "'n' is an option of last-n"),
    ("strategy: full\n", ["strategy.name=lora", "strategy.rr=4"],
     "unknown key 'strategy.rr'; did you mean 'strategy.r'? (strategy lora has no option 'rr'; its options: r, "
     "alpha, dropout, target_modules, pooler)"),
    ("strategy: {name: full, n: 2}\n", [], "strategy.n: strategy full has no option 'n'"),
    ("strategy: {name: feature-extraction, probe: head}\n", ["strategy.lr_decay=0.9"],
     "strategy.lr_decay: strategy feature-extraction does not take lr_decay or group_lrs; use full, last-n, gradual or distill"),
    ("strategy: {name: gradual, head_warmup_steps: 10}\n", [],
     "strategy.head_warmup_steps: strategy gradual has no head warm-up stage; use it with full, last-n or distill"),
])
def test_an_option_the_strategy_lacks_is_exit_2_naming_the_key(tmp_path, capsys, recipe_text, overrides, expected):
    path = tmp_path / "recipe.yaml"
    path.write_text("data: card.md\n" + recipe_text, encoding="utf-8")
    message = cli_error(capsys, ["train", path, *overrides])
    assert f"{path}: {expected}" in message


def test_null_takes_an_option_back_and_head_lr_rides_along_as_before():
    mlm = load_recipe(ROOT / "recipes" / "sst2_mlm.yaml",
                      ["strategy.name=feature-extraction", "strategy.probe=head", "strategy.head_warmup_steps=null"])
    assert mlm.strategy == build_strategy({"name": "feature-extraction", "probe": "head"})
    assert mlm.to_dict()["strategy"] == {"name": "feature-extraction", "probe": "head", "pooling": "mean",
                                         "layers": [-1], "normalize": False}


def test_every_benchmark_override_set_loads_as_its_strategy():
    import importlib.util

    spec = importlib.util.spec_from_file_location("strategies_sst2", ROOT / "benchmarks" / "strategies_sst2.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    for run, overrides in benchmark.RUNS.items():
        recipe = load_recipe(ROOT / benchmark.RECIPE, overrides)
        assert run.startswith(recipe.strategy.name), run
        saved = yaml.safe_load(yaml.safe_dump(recipe.to_dict()))  # the run folder's recipe.yaml
        assert build_strategy(saved["strategy"]) == recipe.strategy


def test_a_new_strategy_is_one_registered_class(sst2_toy, tiny_bert, tmp_path, monkeypatch):
    """Registered here, trained by the unchanged recipe loader and Trainer, described by the unchanged compare."""
    monkeypatch.setattr(strategy_configs, "STRATEGIES", dict(strategy_configs.STRATEGIES))

    @register("bias-only")
    @dataclass
    class BiasOnly(Strategy):
        """BitFit-like: only biases (and the task head) train."""

        shown = ("scale",)
        scale: float = checked(1.0, low=0, low_open=True)

        def adapt(self, model, peft_task_type):
            for name, parameter in model.named_parameters():
                parameter.requires_grad = name.endswith(".bias") or name.startswith("classifier.")
            return model

    with pytest.raises(ValueError, match="already registered"):
        register("full")(BiasOnly)
    with pytest.raises(NLPTransferError, match="strategy.scale must be > 0, got 0"):
        load_recipe({"data": "card.md", "strategy": {"name": "bias-only", "scale": 0}})
    with pytest.raises(NLPTransferError, match=r"strategy bias-only has no option 'n' \(its options: scale\)"):
        load_recipe({"data": "card.md", "strategy": {"name": "bias-only", "n": 2}})
    before = initial_weights(tiny_bert)
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, tiny_bert, out, max_steps=4, learning_rate=1e-2)
    recipe["strategy"] = {"name": "bias-only", "scale": 2}
    train(recipe)
    after = final_weights(out)
    assert all(torch.equal(after[name], value) for name, value in before.items() if not name.endswith(".bias"))
    assert not torch.equal(after["encoder.layer.1.output.dense.bias"], before["encoder.layer.1.output.dense.bias"])
    saved = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["strategy"] == {"name": "bias-only", "scale": 2}
    assert strategy_note(saved) == "scale 2"
