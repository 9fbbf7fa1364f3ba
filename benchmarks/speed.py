"""Training and prediction throughput of nlp_transfer next to the scripts users would write instead.

Training (same model, same sentences, same batch size, same number of steps, same torch threads):
- ``padded Trainer``: a plain `transformers.Trainer` as the transformers text-classification example sets it up
  by default (every row padded to max_length 128, no length grouping);
- ``dynamic Trainer``: the same with `DataCollatorWithPadding` (each batch padded to its longest row);
- ``nlp_transfer``: `nlp_transfer.train` on a data card of the same rows (dynamic padding + length-grouped batches).
The same three for token classification on CoNLL-2003 (the padded baseline pads to 128, the dynamic one uses
`DataCollatorForTokenClassification`).

Prediction: `load_model(DIR).predict` vs `transformers.pipeline("text-classification")` with batch_size 32 and
with its default (one text at a time), on the same texts with the same weights; plus int8 dynamic quantization
(`torch.ao.quantization.quantize_dynamic` on the Linear layers) with its speed-up and accuracy change.

Contenders alternate round by round and each keeps its best round, so a noisy neighbour hurts all alike. Only
`trainer.train()` / the predict call is timed (model loading and tokenization are not).
"""
from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODEL = "minilm-l6"


def sst2_rows(split: str = "train") -> list[tuple[str, int]]:
    name = "train.tsv" if split == "train" else "dev.tsv"
    source = SHARED / "sst2" / name
    if not source.is_file():
        source = ROOT / "samples" / "sst2" / name
    rows = []
    for line in source.read_text(encoding="utf-8").splitlines()[1:]:
        text, label = line.rsplit("\t", 1)
        rows.append((text.strip(), int(label)))
    return rows


def conll_sentences(count: int, seed: int = 0) -> tuple[list[tuple[list[str], list[str]]], list[str]] | None:
    """``count`` random CoNLL-2003 training sentences (words, IOB2 tags) and the label names."""
    card = ROOT / "data_cards" / "conll2003.md"
    if not (SHARED / "conll2003" / "train.txt").is_file():
        return None
    from nlp_transfer.data.readers import load_data

    data = load_data(card, ["train"])
    names = data.label_names
    rows = [(r["tokens"], [names[t] for t in r["tags"]]) for r in data.splits["train"]]
    random.Random(seed).shuffle(rows)
    return rows[:count], names


def device_training(device: str = "cpu", precision: str = "float32") -> dict[str, Any]:
    """The TrainingArguments that put a run on ``device`` in ``precision`` (mixed precision only off the CPU)."""
    if device == "cpu":
        return {"use_cpu": True}
    return {"bf16": precision == "bfloat16", "fp16": precision == "float16"}


def _trainer_args(out: str, steps: int, batch: int, seed: int = 0, device: str = "cpu", precision: str = "float32"):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=5e-5,
                             save_strategy="no", logging_steps=10_000, report_to="none", disable_tqdm=True, seed=seed,
                             **device_training(device, precision))


def _recipe(card: dict, folder: Path, steps: int, batch: int, model: str = MODEL, device: str | None = None,
            precision: str = "float32") -> dict:
    """An nlp_transfer recipe with the plain Trainer's settings: same steps, batch, learning rate, no saving.
    ``device`` None leaves the device to nlp_transfer (the CPU benchmark's behaviour)."""
    training = {"max_steps": steps, "per_device_train_batch_size": batch, "learning_rate": 5e-5,
                "save_strategy": "no", "logging_steps": 10_000, "report_to": "none", "disable_tqdm": True}
    if device is not None:
        training.update(device_training(device, precision))
    return {"task": card["task"], "data": card, "model": model, "max_length": 128, "seed": 0,
            "output_dir": str(folder / "run"), "training": training}


def _timed_train(trainer) -> float:
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


# ------------------------------------------------------------------ sequence classification

def plain_trainer_classification(rows, steps: int, batch: int, padded: bool, model: str = MODEL, device: str = "cpu",
                                 precision: str = "float32") -> float:
    import datasets
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              default_data_collator)

    from nlp_transfer.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(model))
    network = AutoModelForSequenceClassification.from_pretrained(resolve(model), num_labels=2)
    texts, labels = [t for t, _ in rows], [l for _, l in rows]
    encoded = tokenizer(texts, truncation=True, max_length=128, padding="max_length" if padded else False)
    dataset = datasets.Dataset.from_dict({**encoded, "labels": labels})
    collator = default_data_collator if padded else DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=network, args=_trainer_args(out, steps, batch, device=device, precision=precision),
                          train_dataset=dataset, data_collator=collator, processing_class=tokenizer)
        return _timed_train(trainer)


def nlp_transfer_classification(rows, steps: int, batch: int, model: str = MODEL, device: str | None = None,
                                precision: str = "float32") -> tuple[float, str]:
    """Returns the train seconds (trainer.train, as measured by nlp_transfer) and the saved model folder."""
    from nlp_transfer import train

    folder = Path(tempfile.mkdtemp(prefix="bench-cls-"))
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
    card = {"name": "sst2-bench", "task": "sequence-classification", "splits": {"train": str(folder / "train.tsv")},
            "format": "tsv", "text": "sentence", "label": "label", "labels": ["negative", "positive"]}
    metrics = train(_recipe(card, folder, steps, batch, model, device, precision)).metrics
    return metrics["train"]["runtime_s"], str(folder / "run")


# ------------------------------------------------------------------ token classification

def plain_trainer_ner(sentences, label_names, steps: int, batch: int, padded: bool, model: str = MODEL,
                      device: str = "cpu", precision: str = "float32") -> float:
    import datasets
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, Trainer

    from nlp_transfer.models import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(model))
    network = AutoModelForTokenClassification.from_pretrained(resolve(model), num_labels=len(label_names))
    index = {name: i for i, name in enumerate(label_names)}
    words = [w for w, _ in sentences]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=128,
                        padding="max_length" if padded else False)
    labels = []
    for i, (_, tags) in enumerate(sentences):
        previous, row = None, []
        for word in encoded.word_ids(i):  # the first piece of each word carries its tag, as the NER example does
            row.append(-100 if word is None or word == previous else index[tags[word]])
            previous = word
        labels.append(row)
    dataset = datasets.Dataset.from_dict({**encoded, "labels": labels})
    collator = DataCollatorForTokenClassification(tokenizer, padding="max_length" if padded else True, max_length=128)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=network, args=_trainer_args(out, steps, batch, device=device, precision=precision),
                          train_dataset=dataset, data_collator=collator, processing_class=tokenizer)
        return _timed_train(trainer)


def nlp_transfer_ner(sentences, steps: int, batch: int, model: str = MODEL, device: str | None = None,
                     precision: str = "float32") -> float:
    from nlp_transfer import train

    folder = Path(tempfile.mkdtemp(prefix="bench-ner-"))
    text = "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(words, tags)) for words, tags in sentences) + "\n"
    (folder / "train.txt").write_text(text, encoding="utf-8")
    card = {"name": "conll-bench", "task": "token-classification", "splits": {"train": str(folder / "train.txt")},
            "format": "conll", "columns": ["token", "ner"], "tags": "ner", "scheme": "IOB2"}
    try:
        return train(_recipe(card, folder, steps, batch, model, device, precision)).metrics["train"]["runtime_s"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def alternate(contenders: dict[str, Any], rounds: int) -> dict[str, float]:
    """Best time of each contender over ``rounds`` rounds, the order rotating every round."""
    best = {name: float("inf") for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            best[name] = min(best[name], contenders[name]())
    return best


def train_throughput(steps: int, batch: int, rounds: int, seed: int = 0) -> dict[str, Any]:
    rows = sst2_rows()
    random.Random(seed).shuffle(rows)
    rows = rows[:steps * batch]
    saved = {}

    def ours():
        seconds, saved["model"] = nlp_transfer_classification(rows, steps, batch)
        return seconds

    times = alternate({"nlp_transfer": ours,
                       "padded_trainer": lambda: plain_trainer_classification(rows, steps, batch, padded=True),
                       "dynamic_trainer": lambda: plain_trainer_classification(rows, steps, batch, padded=False)},
                      rounds)
    samples = steps * batch
    out = {f"{name}_samples_per_s": samples / seconds for name, seconds in times.items()}
    out["vs_padded_trainer_speedup"] = times["padded_trainer"] / times["nlp_transfer"]
    out["vs_dynamic_trainer_speedup"] = times["dynamic_trainer"] / times["nlp_transfer"]
    out["model_dir"] = saved.get("model")
    return out


def ner_throughput(steps: int, batch: int, rounds: int) -> dict[str, Any] | None:
    found = conll_sentences(steps * batch)
    if found is None:
        return None
    sentences, names = found
    times = alternate({"nlp_transfer": lambda: nlp_transfer_ner(sentences, steps, batch),
                       "padded_trainer": lambda: plain_trainer_ner(sentences, names, steps, batch, padded=True),
                       "dynamic_trainer": lambda: plain_trainer_ner(sentences, names, steps, batch, padded=False)},
                      rounds)
    samples = steps * batch
    out = {f"{name}_samples_per_s": samples / seconds for name, seconds in times.items()}
    out["vs_padded_trainer_speedup"] = times["padded_trainer"] / times["nlp_transfer"]
    out["vs_dynamic_trainer_speedup"] = times["dynamic_trainer"] / times["nlp_transfer"]
    return out


# ------------------------------------------------------------------ prediction

def predict_throughput(model_dir: str, repeat: int, rounds: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import pipeline

    from nlp_transfer import load_model

    dev = sst2_rows("dev")
    texts = [t for t, _ in dev] * repeat
    gold = np.array([l for _, l in dev] * repeat)
    ours = load_model(model_dir)
    theirs = pipeline("text-classification", model=model_dir, device=-1)
    label_index = {name: i for i, name in enumerate(ours.label_names)}
    results: dict[str, Any] = {}

    def run_ours():
        started = time.perf_counter()
        results["ours"] = ours.predict(texts, batch_size=32)
        return time.perf_counter() - started

    def run_pipeline(batch_size):
        def run():
            started = time.perf_counter()
            results[f"pipeline_{batch_size}"] = theirs(texts, batch_size=batch_size, truncation=True)
            return time.perf_counter() - started
        return run

    times = alternate({"nlp_transfer": run_ours, "pipeline_batch32": run_pipeline(32)}, rounds)
    single = texts[: min(len(texts), 400)]  # one text at a time is slow: time a slice, report texts/s
    started = time.perf_counter()
    theirs(single, batch_size=1, truncation=True)
    single_rate = len(single) / (time.perf_counter() - started)

    ours_pred = np.array([label_index[r["label"]] for r in results["ours"]])
    pipe_pred = np.array([label_index[r["label"]] for r in results["pipeline_32"]])
    quantized = torch.ao.quantization.quantize_dynamic(ours.model, {torch.nn.Linear}, dtype=torch.qint8)
    original = ours.model
    ours.model = quantized
    q_time = alternate({"int8": lambda: _time_predict(ours, texts)}, rounds)["int8"]
    q_pred = np.array([label_index[r["label"]] for r in ours.predict(texts, batch_size=32)])
    ours.model = original
    count = len(texts)
    return {
        "texts": count,
        "nlp_transfer_texts_per_s": count / times["nlp_transfer"],
        "pipeline_batch32_texts_per_s": count / times["pipeline_batch32"],
        "pipeline_batch1_texts_per_s": single_rate,
        "vs_pipeline_speedup": times["pipeline_batch32"] / times["nlp_transfer"],
        "vs_pipeline_batch1_speedup": (count / times["nlp_transfer"]) / single_rate,
        "nlp_transfer_accuracy": float((ours_pred == gold).mean()),
        "pipeline_accuracy": float((pipe_pred == gold).mean()),
        "agreement_with_pipeline": float((ours_pred == pipe_pred).mean()),
        "int8_texts_per_s": count / q_time,
        "int8_speedup": times["nlp_transfer"] / q_time,
        "int8_accuracy": float((q_pred == gold).mean()),
    }


def _time_predict(model, texts) -> float:
    started = time.perf_counter()
    model.predict(texts, batch_size=32)
    return time.perf_counter() - started
