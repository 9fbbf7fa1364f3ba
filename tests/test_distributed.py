"""A real 2-process DDP run of the unchanged CLI under `accelerate launch`: gloo on CPU processes, or NCCL where two
GPUs or more are visible."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import tiny_recipe

RANK_LINE = re.compile(r"\[rank (\d)/(\d)\] finished: global_step=(\d+) eval_accuracy=(\S+) weights=(\w+) writes_outputs=(\w+)")


def launch_env() -> dict[str, str]:
    """The children's environment. With one GPU both ranks would share it (NCCL refuses a
    duplicate GPU), so with fewer than two the children see none and run on the CPU with gloo."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if torch.cuda.device_count() >= 2:
        return env
    return {**env, "CUDA_VISIBLE_DEVICES": ""}


STRATEGIES = {
    "full": {"name": "full"},
    # parameters that open mid-run must still be averaged across ranks (DDP with find_unused_parameters)
    "gradual": {"name": "gradual", "every": 4},
    "two-stage": {"name": "full", "head_warmup_steps": 5},
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_accelerate_launch_two_processes_agree_and_only_rank0_writes(strategy, sst2_toy, tiny_bert, tmp_path):
    out = tmp_path / "run"
    recipe = tiny_recipe(sst2_toy, tiny_bert, out, max_steps=12, per_device_train_batch_size=8,
                         eval_strategy="steps", eval_steps=6)
    recipe["strategy"] = STRATEGIES[strategy]
    if strategy != "full":  # keep the last weights (the best checkpoint might predate a layer's opening)
        recipe["training"]["load_best_model_at_end"] = False
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    # With no GPU visible --multi_gpu falls back to CPU processes with gloo; `--cpu` would start only one.
    # `python -m accelerate.commands.launch`: this interpreter's accelerate, wherever its console script lives
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "nlp_transfer", "train", str(recipe_path)]
    done = subprocess.run(command, capture_output=True, text=True, env=launch_env(), timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = {int(m.group(1)): m.groups() for m in RANK_LINE.finditer(done.stdout)}
    assert sorted(ranks) == [0, 1], done.stdout[-3000:]  # really two processes
    assert {r[1] for r in ranks.values()} == {"2"}
    assert ranks[0][2:5] == ranks[1][2:5]  # same steps, same metric, same weights on both ranks
    assert ranks[0][5] == "True" and ranks[1][5] == "False"  # only rank 0 writes

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["train"]["global_step"] == 12
    assert float(ranks[0][3]) == metrics["eval"]["accuracy"]
    predictions = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(predictions) == 64  # every evaluation row once, none duplicated by the second process
    assert [p["line"] for p in predictions] == sorted(p["line"] for p in predictions)
    assert done.stdout.count("nlp-transfer: training") == 1
    assert not (out / ".final-staging").exists()
    if strategy != "full":  # the layers that opened mid-run trained (and, above, stayed equal on both ranks)
        from transformers import AutoModel, AutoModelForSequenceClassification

        start = AutoModel.from_pretrained(tiny_bert).encoder.layer[0].output.dense.weight
        end = AutoModelForSequenceClassification.from_pretrained(out).bert.encoder.layer[0].output.dense.weight
        assert not torch.equal(start, end)
