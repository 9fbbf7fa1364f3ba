"""Every transfer strategy on the same 5,000-row SST-2 subset with MiniLM-L6, one table.

    python -m benchmarks.strategies_sst2            # all strategies, ~15 min on 2 cores
    python -m benchmarks.strategies_sst2 full lora  # some of them

Each run is `nlp-transfer train recipes/strategies_sst2.yaml` with the overrides below; heads and LoRA get a
higher learning rate, as usual for parameters that start from scratch. Prints a Markdown table and writes
`sst2-5k/minilm-l6/<strategy>/{dev_accuracy,trainable_params,train_time_s}` to results.json.
"""
from __future__ import annotations

import sys

from nlp_transfer import train

RECIPE = "recipes/strategies_sst2.yaml"
RUNS = {
    "full": [],
    "full-lr_decay-0.8": ["strategy.lr_decay=0.8", "training.learning_rate=1e-4"],
    "last-n-2": ["strategy.name=last-n", "strategy.n=2", "training.learning_rate=1e-4"],
    "full-group-lrs": ["strategy.group_lrs={embeddings: 2.0e-5, lower: 4.0e-5, upper: 8.0e-5, head: 2.0e-4}",
                       "training.learning_rate=8e-5"],
    "full-two-stage": ["strategy.head_warmup_steps=60", "strategy.head_lr=1e-3"],
    "full-after-mlm": ["model=runs/sst2-mlm"],  # after `nlp-transfer train recipes/sst2_mlm.yaml`
    "gradual-every-100": ["strategy.name=gradual", "strategy.every=100", "training.learning_rate=1e-4"],
    "lora-r8": ["strategy.name=lora", "strategy.r=8", "strategy.alpha=16", "training.learning_rate=5e-4"],
    "feature-extraction-head": ["strategy.name=feature-extraction", "strategy.probe=head", "training.learning_rate=1e-3"],
    # the probe fits scikit-learn, not Trainer: the shared recipe's training: settings are taken back
    "feature-extraction-probe": ["strategy.name=feature-extraction", "strategy.normalize=true", "training=null"],
}


def main() -> None:
    from benchmarks.record_run import record

    chosen = sys.argv[1:] or list(RUNS)
    rows = []
    for name in chosen:
        overrides = RUNS[name] + [f"output_dir=runs/strategies/{name}"]
        metrics = train(RECIPE, overrides).metrics
        accuracy, seconds = metrics["eval"]["accuracy"], metrics["train"]["runtime_s"]
        trainable, total = metrics["params"]["trainable"], metrics["params"]["total"]
        rows.append(f"| {name} | {accuracy:.4f} | {trainable:,} of {total:,} | {seconds:.0f} s |")
        command = f"nlp-transfer train {RECIPE} " + " ".join(overrides)
        record({f"sst2-5k/minilm-l6/{name}/dev_accuracy": round(accuracy, 4),
                f"sst2-5k/minilm-l6/{name}/trainable_params": trainable,
                f"sst2-5k/minilm-l6/{name}/train_time_s": seconds}, command)
        print("\n".join(["| strategy | dev accuracy | trainable params | train time |", "|---|---|---|---|", *rows]),
              flush=True)


if __name__ == "__main__":
    main()
