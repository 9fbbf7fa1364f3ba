"""The benchmark's GPU mode: the CPU benchmark's contenders on an accelerator, plus a bare PyTorch loop as the ceiling.

    bash .gpu/run.sh python -m benchmarks --device cuda --quick     # on the GPU machine (../shared/gpu/README.md)
    python -m benchmarks --device cuda [--precision bfloat16|float16|float32] [--model PATH_OR_ALIAS] [--no-record]
    python -m benchmarks --device cpu --gpu-mode --quick --no-record # the same code on the CPU (tests use a tiny model)

Training, SST-2, at batch 32 and 128, same rows and steps for every contender (mixed precision = ``--precision``,
bf16 by default on a GPU; everything runs in float32 on the CPU):
- ``nlp_transfer``: `nlp_transfer.train` with ``training.bf16`` (or ``fp16``) and its own defaults;
- ``dynamic_trainer`` / ``padded_trainer``: a plain `transformers.Trainer`, `DataCollatorWithPadding` / every row
  padded to 128 (as on the CPU);
- ``bare_loop``: the ceiling: AutoModelForSequenceClassification, AdamW (fused on CUDA), `torch.autocast`, gradient
  clipping at 1.0 like the Trainer's default, batches tokenized, length-sorted and padded before the clock starts
  (pinned memory, non-blocking copies), no Trainer, no scheduler, no logging; one sync at the end.
NER, CoNLL-2003, batch 32: nlp_transfer vs the dynamic-padding Trainer.
Prediction: `load_model(DIR, device=..., precision=...)` vs `pipeline("text-classification", device=...)` (float32,
what `pipeline(device=0)` gives), both at batch 32, with the label agreement; ours also in float32 when the run's
precision is another. Embedding: `Encoder` vs `SentenceTransformer(..., device=...)` (float32) with the cosine
between the vectors; ours also in float32 when the precision is another.

Contenders alternate round by round and the best round counts; a few warm-up steps run before any clock starts.
Figures go to results.json as ``bench/gpu/...`` with the GPU's name and the torch/transformers/tokenizers versions,
and to the "GPU speed" section of RESULTS.md. Figures measured on the CPU (``--gpu-mode``) are never recorded.
"""
from __future__ import annotations

import math
import platform
import random
import re
import shutil
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- bench-gpu:start -->", "<!-- bench-gpu:end -->"
PRECISIONS = ("float32", "bfloat16", "float16")
GOALS = {  # key -> minimum (issue 15, one H200 in bf16)
    "gpu/train/sst2/b32/vs_dynamic_trainer_speedup": 1.3,
    "gpu/train/sst2/b128/vs_dynamic_trainer_speedup": 1.3,
    "gpu/train/sst2/b128/vs_bare_loop": 0.8,
    "gpu/predict/sst2/vs_pipeline_speedup": 2.0,
    "gpu/embed/vs_sentence_transformers_speedup": 1.2,
}
MIN_AGREEMENT = 0.995  # as the CPU mode: bf16 may flip a borderline text, no more
MIN_COSINE = 0.9999
ABOUT = (
    "`python -m benchmarks --device cuda` runs the CPU benchmark's contenders on the GPU in bf16 (`--precision` "
    "changes it): SST-2 training at batch 32 and 128 (nlp_transfer, plain Trainer with dynamic padding, plain Trainer "
    "padded to 128, and a bare PyTorch loop with fused AdamW, autocast and pre-tokenized length-sorted batches as the "
    "ceiling), CoNLL-2003 training at batch 32 (nlp_transfer vs the dynamic-padding Trainer), prediction "
    "(`load_model(..., device='cuda')` vs `pipeline(device=0)`, with the label agreement) and embedding (vs "
    "sentence-transformers on the GPU, with the cosine between the vectors). Goals: training at least 1.3x the "
    "dynamic-padding Trainer at batch 32 and 128 and 0.8x the bare loop at batch 128; predict at least 2x the "
    "pipeline at identical labels (agreement 0.995 or more); embed at least 1.2x sentence-transformers at a mean "
    "cosine of 0.9999 or more. On the GPU "
    "machine: `bash ../shared/gpu/prepare.sh` here, then `bash .gpu/run.sh python -m benchmarks --device cuda "
    "--quick` there (benchmarks/gpu.py says what each contender does)."
)


# ------------------------------------------------------------------ helpers

def effective_precision(device: str, precision: str | None) -> str:
    """bf16 by default off the CPU; the CPU always computes in float32 (as `Runtime.resolve` does)."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if device == "cpu":
        return "float32"
    return precision or "bfloat16"


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch {torch.__version__} sees no CUDA GPU here. "
                         "`--device cpu --gpu-mode` runs the GPU mode's code on the CPU (figures are not recorded).")


def machine_info(device: str, precision: str) -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        name = torch.cuda.get_device_name(index)
    else:
        name = f"CPU ({platform.processor() or platform.machine()})"
    return {"device_name": name, "precision": precision, "torch": torch.__version__,
            "cuda": str(torch.version.cuda), "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__}


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(device: str, precision: str):
    import torch

    enabled = precision != "float32" and device != "cpu"
    return torch.autocast(device.split(":")[0], dtype=getattr(torch, precision), enabled=enabled)


def pipeline_device(device: str):
    """``pipeline(device=0)`` for ``cuda``, the name otherwise."""
    if device == "cuda":
        return 0
    return device


def positive(seconds: float) -> float:
    return max(float(seconds), 1e-3)  # nlp_transfer reports seconds to 2 decimals: a tiny run may round to 0


# ------------------------------------------------------------------ the bare loop

def padded_batches(encoded: dict, labels: list[int], batch: int, pad_id: int, seed: int, multiple: int | None,
                   pin: bool) -> list[dict[str, Any]]:
    """Length-sorted batches, each padded to its longest row (rounded up to ``multiple``), in shuffled order."""
    import torch

    ids = encoded["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
    random.Random(seed).shuffle(chunks)
    out = []
    for chunk in chunks:
        width = max(len(ids[i]) for i in chunk)
        if multiple:
            width = int(math.ceil(width / multiple) * multiple)
        tensors = {"input_ids": torch.full((len(chunk), width), pad_id, dtype=torch.long),
                   "attention_mask": torch.zeros((len(chunk), width), dtype=torch.long)}
        if "token_type_ids" in encoded:
            tensors["token_type_ids"] = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            n = len(ids[i])
            tensors["input_ids"][row, :n] = torch.tensor(ids[i])
            tensors["attention_mask"][row, :n] = 1
            if "token_type_ids" in encoded:
                tensors["token_type_ids"][row, :n] = torch.tensor(encoded["token_type_ids"][i])
        tensors["labels"] = torch.tensor([labels[i] for i in chunk], dtype=torch.long)
        out.append({k: v.pin_memory() if pin else v for k, v in tensors.items()})
    return out


def bare_loop(rows, steps: int, batch: int, model: str, device: str, precision: str, seed: int = 0) -> float:
    """Seconds for ``steps`` optimizer steps of a plain PyTorch loop (see the module's docstring)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from nlp_transfer.models import resolve

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve(model))
    network = AutoModelForSequenceClassification.from_pretrained(resolve(model), num_labels=2).to(device).train()
    encoded = tokenizer([t for t, _ in rows], truncation=True, max_length=128)
    cuda = device.startswith("cuda")
    batches = padded_batches(encoded, [l for _, l in rows], batch, tokenizer.pad_token_id or 0, seed,
                             8 if precision != "float32" and not device == "cpu" else None, pin=cuda)
    batches = (batches * math.ceil(steps / max(len(batches), 1)))[:steps]
    optimizer = torch.optim.AdamW(network.parameters(), lr=5e-5, weight_decay=0.0, fused=True if cuda else None)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=precision == "float16" and device != "cpu")
    parameters = [p for p in network.parameters() if p.requires_grad]
    synchronize(device)
    started = time.perf_counter()
    for tensors in batches:
        inputs = {k: v.to(device, non_blocking=True) for k, v in tensors.items()}
        with autocast(device, precision):
            loss = network(**inputs).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return time.perf_counter() - started


# ------------------------------------------------------------------ the parts

def train_part(rows_all, steps: int, batches, rounds: int, model: str, device: str, precision: str,
               seed: int = 0) -> tuple[dict[str, float], str | None]:
    """SST-2 training figures at each batch size; also the folder of the last nlp_transfer run (for predict)."""
    from benchmarks import speed

    figures: dict[str, float] = {}
    kept: dict[str, str] = {}
    for batch in batches:
        rows = list(rows_all)
        random.Random(seed).shuffle(rows)
        rows = rows[:steps * batch]

        def ours():
            seconds, folder = speed.nlp_transfer_classification(rows, steps, batch, model, device, precision)
            if "model" in kept:
                shutil.rmtree(Path(kept["model"]).parent, ignore_errors=True)
            kept["model"] = folder
            return positive(seconds)

        print(f"  SST-2, batch {batch}, {steps} steps, {rounds} rounds", flush=True)
        times = speed.alternate({
            "nlp_transfer": ours,
            "dynamic_trainer": lambda: speed.plain_trainer_classification(rows, steps, batch, False, model, device,
                                                                          precision),
            "padded_trainer": lambda: speed.plain_trainer_classification(rows, steps, batch, True, model, device,
                                                                         precision),
            "bare_loop": lambda: bare_loop(rows, steps, batch, model, device, precision, seed),
        }, rounds)
        prefix = f"gpu/train/sst2/b{batch}/"
        samples = steps * batch
        figures.update({f"{prefix}{name}_samples_per_s": samples / seconds for name, seconds in times.items()})
        figures[f"{prefix}vs_dynamic_trainer_speedup"] = times["dynamic_trainer"] / times["nlp_transfer"]
        figures[f"{prefix}vs_padded_trainer_speedup"] = times["padded_trainer"] / times["nlp_transfer"]
        figures[f"{prefix}vs_bare_loop"] = times["bare_loop"] / times["nlp_transfer"]
    return figures, kept.get("model")


def ner_part(steps: int, batch: int, rounds: int, model: str, device: str, precision: str) -> dict[str, float]:
    from benchmarks import speed

    found = speed.conll_sentences(steps * batch)
    if found is None:
        print(f"  CoNLL-2003 not found under {speed.SHARED / 'conll2003'}: NER skipped", flush=True)
        return {}
    sentences, names = found
    print(f"  CoNLL-2003, batch {batch}, {steps} steps, {rounds} rounds", flush=True)
    times = speed.alternate({
        "nlp_transfer": lambda: positive(speed.nlp_transfer_ner(sentences, steps, batch, model, device, precision)),
        "dynamic_trainer": lambda: speed.plain_trainer_ner(sentences, names, steps, batch, False, model, device,
                                                           precision),
    }, rounds)
    prefix = f"gpu/train/conll03/b{batch}/"
    figures = {f"{prefix}{name}_samples_per_s": steps * batch / seconds for name, seconds in times.items()}
    figures[f"{prefix}vs_dynamic_trainer_speedup"] = times["dynamic_trainer"] / times["nlp_transfer"]
    return figures


def predict_part(model_dir: str, count: int, rounds: int, device: str, precision: str) -> dict[str, float]:
    import numpy as np
    from transformers import pipeline

    from benchmarks import speed
    from nlp_transfer import load_model

    dev = speed.sst2_rows("dev")
    texts = [dev[i % len(dev)][0] for i in range(count)]
    ours = {precision: load_model(model_dir, device=device, precision=precision)}
    if precision != "float32":
        ours["float32"] = load_model(model_dir, device=device, precision="float32")
    theirs = pipeline("text-classification", model=model_dir, device=pipeline_device(device))
    names = {name: i for i, name in enumerate(ours[precision].label_names)}
    for predictor in ours.values():  # warm-up: kernels, allocator, autocast caches
        predictor.predict(texts[:256], batch_size=32)
    theirs(texts[:256], batch_size=32, truncation=True)
    labels: dict[str, Any] = {}

    def timed(name, call):
        def run():
            synchronize(device)
            started = time.perf_counter()
            labels[name] = np.array([names[r["label"]] for r in call()])
            synchronize(device)
            return positive(time.perf_counter() - started)
        return run

    contenders = {f"ours_{p}": timed(f"ours_{p}", lambda m=m: m.predict(texts, batch_size=32)) for p, m in ours.items()}
    contenders["pipeline"] = timed("pipeline", lambda: theirs(texts, batch_size=32, truncation=True))
    times = speed.alternate(contenders, rounds)
    agreement = float((labels[f"ours_{precision}"] == labels["pipeline"]).mean())
    figures = {"texts": float(count),
               "nlp_transfer_texts_per_s": count / times[f"ours_{precision}"],
               "pipeline_texts_per_s": count / times["pipeline"],
               "vs_pipeline_speedup": times["pipeline"] / times[f"ours_{precision}"],
               "agreement_with_pipeline": agreement,
               "labels_identical": float(agreement == 1.0)}
    if precision != "float32":
        figures.update({"nlp_transfer_float32_texts_per_s": count / times["ours_float32"],
                        "float32_vs_pipeline_speedup": times["pipeline"] / times["ours_float32"],
                        "float32_agreement_with_pipeline": float((labels["ours_float32"] == labels["pipeline"]).mean())})
    return {f"gpu/predict/sst2/{k}": v for k, v in figures.items()}


def embed_part(model: str, count: int, rounds: int, device: str, precision: str) -> dict[str, float]:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from benchmarks import embed_speed, speed
    from nlp_transfer.models import resolve
    from nlp_transfer.runtime import Runtime
    from nlp_transfer.encoders import EmbedSettings, Encoder

    texts = embed_speed.sentences(count)
    theirs = SentenceTransformer(resolve(model), device=device)
    settings = EmbedSettings(pooling="mean", normalize=True, batch_size=32, max_length=int(theirs.max_seq_length))
    ours = {p: Encoder(model, runtime=Runtime.resolve(device, p)) for p in dict.fromkeys([precision, "float32"])}
    for encoder in ours.values():
        encoder.encode(texts[:256], settings)
    theirs.encode(texts[:256], batch_size=32, normalize_embeddings=True)
    vectors: dict[str, Any] = {}

    def timed(name, call):
        def run():
            synchronize(device)
            started = time.perf_counter()
            vectors[name] = np.asarray(call(), dtype=np.float32)
            synchronize(device)
            return positive(time.perf_counter() - started)
        return run

    contenders = {f"ours_{p}": timed(f"ours_{p}", lambda e=e: e.encode(texts, settings)) for p, e in ours.items()}
    contenders["st"] = timed("st", lambda: theirs.encode(texts, batch_size=32, normalize_embeddings=True))
    times = speed.alternate(contenders, rounds)

    def cosines(name):
        return (vectors[name] * vectors["st"]).sum(axis=1)

    figures = {"texts": float(count),
               "nlp_transfer_texts_per_s": count / times[f"ours_{precision}"],
               "st_texts_per_s": count / times["st"],
               "vs_sentence_transformers_speedup": times["st"] / times[f"ours_{precision}"],
               "mean_cosine": float(cosines(f"ours_{precision}").mean()),
               "min_cosine": float(cosines(f"ours_{precision}").min())}
    if precision != "float32":
        figures.update({"nlp_transfer_float32_texts_per_s": count / times["ours_float32"],
                        "float32_vs_sentence_transformers_speedup": times["st"] / times["ours_float32"],
                        "float32_mean_cosine": float(cosines("ours_float32").mean())})
    return {f"gpu/embed/{k}": v for k, v in figures.items()}


def warm_up(model: str, device: str, precision: str) -> None:
    """CUDA context, cuBLAS handles and the first kernels, before any contender's clock starts."""
    from benchmarks import speed

    if device != "cpu":
        bare_loop(speed.sst2_rows()[:5 * 32], 5, 32, model, device, precision)


# ------------------------------------------------------------------ the run

def settings(quick: bool) -> dict[str, Any]:
    """Sizes of the GPU mode: --quick takes a few minutes on one GPU, the full run about four times that."""
    if quick:
        return {"steps": 50, "rounds": 2, "batches": (32, 128), "ner_batch": 32, "predict_texts": 872 * 4,
                "embed_texts": 10_000}
    return {"steps": 200, "rounds": 3, "batches": (32, 128), "ner_batch": 32, "predict_texts": 872 * 20,
            "embed_texts": 40_000}


def gpu_benchmark(device: str = "cuda", precision: str | None = None, model: str | None = None, steps: int = 50,
                  batches=(32, 128), ner_batch: int = 32, rounds: int = 2, predict_texts: int = 872 * 4,
                  embed_texts: int = 10_000, only: set[str] | None = None, record: bool = False,
                  command: str = "python -m benchmarks --device cuda", sst2_rows=None) -> dict[str, float]:
    """Every figure of the GPU mode (keys ``gpu/...``, without results.json's ``bench/``). ``only``: a subset of
    train, ner, predict, embed. ``record``: write results.json and RESULTS.md (never for ``device='cpu'``)."""
    from benchmarks import speed

    model = model or speed.MODEL
    precision = effective_precision(device, precision)
    check_device(device)
    want = (lambda name: only is None or name in only)
    info = machine_info(device, precision)
    print(f"GPU mode on {info['device_name']}, {precision}, model {model}; torch {info['torch']}, "
          f"transformers {info['transformers']}, tokenizers {info['tokenizers']}", flush=True)
    rows = list(sst2_rows) if sst2_rows is not None else speed.sst2_rows()
    clock = time.perf_counter()

    def lap(part):
        nonlocal clock
        print(f"  ({part}: {time.perf_counter() - clock:.0f} s)", flush=True)
        clock = time.perf_counter()

    warm_up(model, device, precision)
    figures: dict[str, float] = {}
    model_dir = None
    if want("train"):
        print("training throughput", flush=True)
        found, model_dir = train_part(rows, steps, batches, rounds, model, device, precision)
        figures.update(found)
        lap("train")
    if want("ner"):
        print("NER training throughput", flush=True)
        figures.update(ner_part(steps, ner_batch, rounds, model, device, precision))
        lap("ner")
    if want("predict"):
        trained = speed.ROOT / "runs" / "sst2-minilm"
        if model == speed.MODEL and (trained / "config.json").is_file():
            source = str(trained)
        elif model_dir is not None:
            source = model_dir
        else:
            source = model_dir = speed.nlp_transfer_classification(rows[:steps * batches[0]], steps, batches[0], model,
                                                                   device, precision)[1]
        print(f"prediction throughput: {source}, {predict_texts} SST-2 dev texts", flush=True)
        figures.update(predict_part(source, predict_texts, rounds, device, precision))
        lap("predict")
    if model_dir is not None:
        shutil.rmtree(Path(model_dir).parent, ignore_errors=True)
    if want("embed"):
        print(f"embedding throughput: {embed_texts} SST-2 texts", flush=True)
        figures.update(embed_part(model, embed_texts, rounds, device, precision))
        lap("embed")
    if record:
        if device == "cpu":
            print("not recorded: GPU-mode figures measured on the CPU would pass for GPU figures", flush=True)
        else:
            save(figures, info, command)
    return figures


# ------------------------------------------------------------------ reporting

def table(figures: dict[str, float]) -> str:
    def get(key, fmt="{:.1f}"):
        value = figures.get(key)
        return "—" if value is None else fmt.format(value)

    def goal(key):
        return f">= {GOALS[key]}x" if key in GOALS else "—"

    lines = ["| measurement | nlp_transfer | peer | ratio | goal |", "|---|---|---|---|---|"]
    batches = sorted({int(m.group(1)) for k in figures for m in [re.match(r"gpu/train/sst2/b(\d+)/", k)] if m})
    for batch in batches:
        p = f"gpu/train/sst2/b{batch}/"
        for peer, label, ratio in (("dynamic_trainer", "Trainer, dynamic padding", "vs_dynamic_trainer_speedup"),
                                   ("padded_trainer", "Trainer, padded to 128", "vs_padded_trainer_speedup"),
                                   ("bare_loop", "bare PyTorch loop (ceiling)", "vs_bare_loop")):
            lines.append(f"| train SST-2 batch {batch}, samples/s vs {label} | {get(p + 'nlp_transfer_samples_per_s')} "
                         f"| {get(p + peer + '_samples_per_s')} | **{get(p + ratio, '{:.2f}x')}** | {goal(p + ratio)} |")
    for key in sorted(k for k in figures if k.startswith("gpu/train/conll03/") and k.endswith("vs_dynamic_trainer_speedup")):
        p = key.rsplit("/", 1)[0] + "/"
        lines.append(f"| train CoNLL-2003 {p.split('/')[-2].replace('b', 'batch ')}, samples/s vs Trainer, dynamic "
                     f"padding | {get(p + 'nlp_transfer_samples_per_s')} | {get(p + 'dynamic_trainer_samples_per_s')} "
                     f"| **{get(key, '{:.2f}x')}** | — |")
    p = "gpu/predict/sst2/"
    if p + "vs_pipeline_speedup" in figures:
        lines.append(f"| predict SST-2 dev, texts/s vs pipeline (float32, batch 32) | {get(p + 'nlp_transfer_texts_per_s')} "
                     f"| {get(p + 'pipeline_texts_per_s')} | **{get(p + 'vs_pipeline_speedup', '{:.2f}x')}** "
                     f"| {goal(p + 'vs_pipeline_speedup')} |")
        lines.append(f"| predict: label agreement with the pipeline | {get(p + 'agreement_with_pipeline', '{:.4f}')} "
                     f"| — | — | >= {MIN_AGREEMENT} |")
        if p + "float32_vs_pipeline_speedup" in figures:
            lines.append(f"| predict in float32, texts/s vs pipeline (agreement) | "
                         f"{get(p + 'nlp_transfer_float32_texts_per_s')} | {get(p + 'pipeline_texts_per_s')} "
                         f"| {get(p + 'float32_vs_pipeline_speedup', '{:.2f}x')} "
                         f"({get(p + 'float32_agreement_with_pipeline', '{:.4f}')}) | — |")
    p = "gpu/embed/"
    if p + "vs_sentence_transformers_speedup" in figures:
        lines.append(f"| embed, texts/s vs sentence-transformers (float32) | {get(p + 'nlp_transfer_texts_per_s')} "
                     f"| {get(p + 'st_texts_per_s')} | **{get(p + 'vs_sentence_transformers_speedup', '{:.2f}x')}** "
                     f"| {goal(p + 'vs_sentence_transformers_speedup')} |")
        lines.append(f"| embed: mean / min cosine to sentence-transformers' vectors | {get(p + 'mean_cosine', '{:.6f}')} "
                     f"| {get(p + 'min_cosine', '{:.6f}')} | — | mean >= {MIN_COSINE} |")
        if p + "float32_vs_sentence_transformers_speedup" in figures:
            lines.append(f"| embed in float32, texts/s vs sentence-transformers (mean cosine) | "
                         f"{get(p + 'nlp_transfer_float32_texts_per_s')} | {get(p + 'st_texts_per_s')} "
                         f"| {get(p + 'float32_vs_sentence_transformers_speedup', '{:.2f}x')} "
                         f"({get(p + 'float32_mean_cosine', '{:.6f}')}) | — |")
    return "\n".join(lines)


def failures(figures: dict[str, float]) -> list[str]:
    missed = [f"{key} = {figures[key]:.2f} < {goal}" for key, goal in GOALS.items()
              if key in figures and figures[key] < goal]
    agreement = figures.get("gpu/predict/sst2/agreement_with_pipeline")
    if agreement is not None and agreement < MIN_AGREEMENT:
        missed.append(f"GPU predictions differ from the pipeline's on {1 - agreement:.2%} of texts")
    cosine = figures.get("gpu/embed/mean_cosine")
    if cosine is not None and cosine < MIN_COSINE:
        missed.append(f"GPU embeddings: mean cosine to sentence-transformers {cosine:.6f} < {MIN_COSINE}")
    return missed


def section(text: str, command: str, info: dict[str, str]) -> str:
    return (f"{START}\n## GPU speed\n\n{textwrap.fill(ABOUT, 115)}\n\n`{command}` on {date.today().isoformat()}; {info['device_name']}, "
            f"{info['precision']}, torch {info['torch']} (CUDA {info['cuda']}), transformers {info['transformers']}, "
            f"tokenizers {info['tokenizers']}, Python {platform.python_version()}.\n\n{text}\n{END}")


def save(figures: dict[str, float], info: dict[str, str], command: str, results: Path | None = None,
         results_md: Path | None = None) -> None:
    """results.json: every figure as ``bench/gpu/...`` plus the GPU's name and the versions; RESULTS.md: the section."""
    from benchmarks.record_run import RESULTS, record, replace_section

    entries: dict[str, Any] = {f"bench/{key}": round(value, 4) for key, value in figures.items()}
    for name, value in info.items():  # strings: the GPU's name, the precision and the versions measured with
        entries[f"bench/gpu/{name}" if name in ("device_name", "precision") else f"bench/gpu/versions/{name}"] = value
    record(entries, command, results or RESULTS)
    replace_section(results_md or RESULTS_MD, START, END, section(table(figures), command, info))
