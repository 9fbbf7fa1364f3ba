"""All speed and memory figures in one run, side by side with the tools users would pick instead.

    python -m benchmarks --quick    # a few minutes on 2 cores; exits 1 if a ratio misses its goal
    python -m benchmarks            # the full run (longer rounds, 100k-text embedding memory)
    make bench                      # = python -m benchmarks
    python -m benchmarks --device cuda [--quick] [--precision bfloat16] [--model PATH_OR_ALIAS]   # GPU mode
    python -m benchmarks --device cpu --gpu-mode --quick --no-record   # the GPU mode's code on the CPU

Prints one table, rewrites the "Speed" section of benchmarks/RESULTS.md (command, machine, versions, date)
and records every figure in benchmarks/results.json under `bench/...`. Goals (checked in both modes):
training >= 1.5x the max_length-padding Trainer and >= 1.0x the dynamic-padding Trainer on SST-2;
prediction >= 1.2x the transformers pipeline (batch 32) with the same predictions.

With ``--device cuda`` (GPU mode, benchmarks/gpu.py) the figures are ``bench/gpu/...`` and go to the "GPU speed"
section of RESULTS.md, with the GPU's name and the versions; its goals are in ``gpu.GOALS``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
GOALS = {  # key -> minimum
    "train/sst2/vs_padded_trainer_speedup": 1.5,
    "train/sst2/vs_dynamic_trainer_speedup": 1.0,
    "predict/sst2/vs_pipeline_speedup": 1.2,
    "static/glove_load/first_vs_gensim_speedup": 1.0,
    "static/glove_load/cached_vs_first_speedup": 20.0,
}


def machine() -> str:
    import torch
    import transformers

    return (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, transformers {transformers.__version__}, Python "
            f"{platform.python_version()}")


def run(quick: bool, only: set[str] | None = None) -> dict[str, float]:
    from benchmarks import speed

    figures: dict[str, float] = {}
    want = (lambda name: only is None or name in only)
    steps, rounds = (16, 2) if quick else (60, 3)
    if want("train"):
        print(f"training throughput: SST-2, {steps} steps of 32, {rounds} alternating rounds", flush=True)
        result = speed.train_throughput(steps, 32, rounds)
        figures.update({f"train/sst2/{k}": v for k, v in result.items() if k != "model_dir"})
        model_dir = result["model_dir"]
    else:
        model_dir = None
    if want("ner"):
        print(f"training throughput: CoNLL-2003, {steps} steps of 32", flush=True)
        result = speed.ner_throughput(steps, 32, rounds)
        if result:
            figures.update({f"train/conll03/{k}": v for k, v in result.items()})
    if want("predict"):
        trained = Path("runs/sst2-minilm")
        source = str(trained) if (trained / "config.json").is_file() else model_dir
        if source is None:
            source = speed.nlp_transfer_classification(speed.sst2_rows()[:256], 8, 32)[1]
        print(f"prediction throughput: {source} on SST-2 dev", flush=True)
        result = speed.predict_throughput(source, 1 if quick else 4, rounds)
        figures.update({f"predict/sst2/{k}": v for k, v in result.items()})
    if want("embed"):
        from benchmarks import embed_speed

        print("embedding throughput vs sentence-transformers", flush=True)
        result = embed_speed.speed(1000 if quick else 4000, rounds, 32)
        figures.update({f"embed/{k}": v for k, v in result.items()})
        count = 10_000 if quick else 100_000
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            mem = embed_speed.memory(count, Path(folder) / "emb")
        figures[f"memory/embed_{count // 1000}k/peak_rss_mb"] = mem["peak_mb"]
        figures[f"memory/embed_{count // 1000}k/above_model_mb"] = mem["above_model_mb"]
    if want("train-memory"):
        figures["memory/train_sst2/peak_rss_mb"] = train_memory(steps)
    if want("glove"):
        from benchmarks import glove_load

        if glove_load.GLOVE.is_file():
            print("GloVe first/cached load vs gensim", flush=True)
            saved = os.environ.get("NLP_TRANSFER_CACHE")
            try:
                best = glove_load.run(glove_load.GLOVE, 1 if quick else 3)
            finally:
                if saved is None:
                    os.environ.pop("NLP_TRANSFER_CACHE", None)
                else:
                    os.environ["NLP_TRANSFER_CACHE"] = saved
            figures["static/glove_load/first_vs_gensim_speedup"] = best["gensim"] / best["first"]
            figures["static/glove_load/cached_vs_first_speedup"] = best["first"] / best["cached"]
    return figures


TRAIN_CHILD = """
import resource, json, sys
sys.path.insert(0, {root!r})
from benchmarks import speed
rows = speed.sst2_rows()[: {steps} * 32]
speed.nlp_transfer_classification(rows, {steps}, 32)
# VmHWM: this process's own peak (ru_maxrss would carry over the forking parent's peak across exec)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({{"peak_mb": peak}}))
"""


def train_memory(steps: int) -> float:
    """Peak resident memory of a training run (MiniLM-L6, batch 32), in a child process."""
    import subprocess

    code = TRAIN_CHILD.format(root=str(Path(__file__).resolve().parents[1]), steps=steps)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def table(figures: dict[str, float]) -> str:
    def get(key, fmt="{:.1f}"):
        value = figures.get(key)
        return "—" if value is None else fmt.format(value)

    lines = ["| measurement | nlp_transfer | peer | ratio | goal |", "|---|---|---|---|---|"]
    for task, name in (("sst2", "SST-2"), ("conll03", "CoNLL-2003")):
        for peer, label in (("padded_trainer", "Trainer, padded to 128"), ("dynamic_trainer", "Trainer, dynamic padding")):
            key = f"train/{task}/vs_{peer}_speedup"
            if key in figures:
                goal = GOALS.get(key)
                lines.append(f"| train {name}, samples/s vs {label} | {get(f'train/{task}/nlp_transfer_samples_per_s')} "
                             f"| {get(f'train/{task}/{peer}_samples_per_s')} | **{get(key, '{:.2f}x')}** "
                             f"| {'>= %.1fx' % goal if goal else '—'} |")
    if "predict/sst2/vs_pipeline_speedup" in figures:
        lines.append(f"| predict SST-2 dev, texts/s vs pipeline (batch 32) | {get('predict/sst2/nlp_transfer_texts_per_s')} "
                     f"| {get('predict/sst2/pipeline_batch32_texts_per_s')} | **{get('predict/sst2/vs_pipeline_speedup', '{:.2f}x')}** | >= 1.2x |")
        lines.append(f"| predict SST-2 dev, texts/s vs pipeline (default, one text at a time) | "
                     f"{get('predict/sst2/nlp_transfer_texts_per_s')} | {get('predict/sst2/pipeline_batch1_texts_per_s')} "
                     f"| {get('predict/sst2/vs_pipeline_batch1_speedup', '{:.2f}x')} | — |")
        lines.append(f"| predict accuracy (ours / pipeline / agreement) | {get('predict/sst2/nlp_transfer_accuracy', '{:.4f}')} "
                     f"| {get('predict/sst2/pipeline_accuracy', '{:.4f}')} | {get('predict/sst2/agreement_with_pipeline', '{:.4f}')} | equal |")
        lines.append(f"| int8 dynamic quantization: texts/s (speed-up), accuracy | {get('predict/sst2/int8_texts_per_s')} "
                     f"| — | {get('predict/sst2/int8_speedup', '{:.2f}x')}, accuracy {get('predict/sst2/int8_accuracy', '{:.4f}')} | — |")
    if "embed/speedup" in figures:
        lines.append(f"| embed, texts/s vs sentence-transformers encode | {get('embed/ours_texts_per_s')} "
                     f"| {get('embed/st_texts_per_s')} | {get('embed/speedup', '{:.2f}x')} | — |")
    for key, value in figures.items():
        if key.startswith("memory/"):
            lines.append(f"| {key.removeprefix('memory/')} (MB) | {value:.0f} | — | — | — |")
    for key, label in (("static/glove_load/first_vs_gensim_speedup", "GloVe 100k first load vs gensim load_word2vec_format"),
                       ("static/glove_load/cached_vs_first_speedup", "GloVe cached reload vs first load")):
        if key in figures:
            lines.append(f"| {label} | — | — | **{figures[key]:.1f}x** | >= {GOALS[key]:.0f}x |")
    return "\n".join(lines)


def failures(figures: dict[str, float]) -> list[str]:
    missed = [f"{key} = {figures[key]:.2f} < {goal}" for key, goal in GOALS.items()
              if key in figures and figures[key] < goal]
    agreement = figures.get("predict/sst2/agreement_with_pipeline")
    if agreement is not None and agreement < 0.995:
        missed.append(f"predictions differ from the pipeline's on {1 - agreement:.1%} of texts")
    return missed


def update_results(text: str, command: str) -> None:
    from benchmarks.record_run import replace_section

    section = (f"{START}\n## Speed and memory against the usual alternatives\n\n`{command}` on {date.today().isoformat()}; "
               f"{machine()}.\n\n{text}\n{END}")
    replace_section(RESULTS_MD, START, END, section)


def gpu_main(args, command: str) -> int:
    """The GPU mode: ``--device cuda`` (or ``--device cpu --gpu-mode``, which runs its code but records nothing)."""
    from benchmarks import gpu

    sizes = gpu.settings(args.quick)
    if args.steps:
        sizes["steps"] = args.steps
    figures = gpu.gpu_benchmark(device=args.device, precision=args.precision, model=args.model,
                                only=set(args.only) if args.only else None,
                                record=not args.no_record and args.device != "cpu", command=command, **sizes)
    print(gpu.table(figures))
    missed = gpu.failures(figures)
    if args.device == "cpu":
        for line in missed:
            print(f"(GPU goal, not checked on the CPU: {line})")
        return 0
    for line in missed:
        print(f"GOAL MISSED: {line}", file=sys.stderr)
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (a few minutes); still checks the goals")
    parser.add_argument("--only", nargs="*", help="train ner predict embed train-memory glove (GPU mode: the first four)")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md / results.json")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu (default): the CPU benchmark; cuda: the GPU mode (benchmarks/gpu.py)")
    parser.add_argument("--gpu-mode", action="store_true", help="with --device cpu: run the GPU mode's code on the "
                        "CPU in float32 (a check of the code; its figures are never recorded)")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                        help="GPU mode: mixed precision of every contender (default bfloat16; the CPU uses float32)")
    parser.add_argument("--model", help="GPU mode: the encoder, a path or an alias (default minilm-l6)")
    parser.add_argument("--steps", type=int, help="GPU mode: training steps per contender (default 50, 200 without --quick)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    if args.device != "cpu" or args.gpu_mode:
        return gpu_main(args, command.strip())
    for option in ("precision", "model", "steps"):
        if getattr(args, option) is not None:
            parser.error(f"--{option} is for the GPU mode (--device cuda, or --device cpu --gpu-mode)")
    started = time.perf_counter()
    figures = run(args.quick, set(args.only) if args.only else None)
    text = table(figures)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s)")
    if not args.no_record:
        from benchmarks.record_run import record

        record({f"bench/{key}": round(value, 4) for key, value in figures.items()}, command.strip())
        update_results(text, command.strip())
    missed = failures(figures)
    for line in missed:
        print(f"GOAL MISSED: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
