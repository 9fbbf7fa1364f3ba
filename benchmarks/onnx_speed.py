"""ONNX exports next to the torch models they came from: accuracy, agreement and speed, in one run.

    OMP_NUM_THREADS=2 python -m benchmarks.onnx_speed --classifier runs/sst2-minilm --tagger runs/conll03-minilm-1ep

For each subject the run folder (or encoder) is exported with `nlp-transfer export --format onnx --int8` (the export
checks fp32 parity itself), then torch fp32, onnxruntime fp32 and onnxruntime int8 predict the same held-out texts
through `load_model(...)` (same tokenization, same batching, same thread count): at batch 1 (the first
``--batch1-rows`` texts, one call per text) and batch 32 (all texts). Contenders alternate round by round and each
keeps its best round. Measured: texts/s, the speed-up over torch fp32, accuracy (SST-2 dev) / entity F1 (CoNLL
test) / cosine to torch's embeddings, label agreement and the fp32 logit difference.

Goals (issue 18): fp32 logits within 1e-4 and the same labels; int8 >= 99% label agreement, <= 1 point of accuracy
lost, >= 1.5x torch fp32 at batch 1 on 2 cores; tagger int8 entity F1 within 0.5 points; embeddings fp32 cosine
>= 0.9999. Figures go to results.json (``onnx/...``) and the ONNX section of RESULTS.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.record_run import record, replace_section

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- onnx:start -->", "<!-- onnx:end -->"


def best_time(calls: dict[str, callable], rounds: int) -> dict[str, float]:
    """Seconds of each call's best round, the contenders alternating round by round."""
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def classifier(run: Path, out: Path, batch1_rows: int, rounds: int) -> dict:
    from nlp_transfer import load_model
    from nlp_transfer.export.onnx_export import export_onnx

    rows = [line.rsplit("\t", 1) for line in (SHARED / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    texts, gold = [r[0].strip() for r in rows], np.array([int(r[1]) for r in rows])
    report = export_onnx(run, out, int8=True)
    models = {"torch fp32": load_model(run, "cpu"), "onnx fp32": load_model(out, "cpu", variant="fp32"),
              "onnx int8": load_model(out, "cpu", variant="int8")}
    logits = {name: m.logits(texts, batch_size=32) for name, m in models.items()}
    labels = {name: models[name].calibration.decide(models[name].calibration.probabilities(v, "single_label"),
                                                     "single_label") for name, v in logits.items()}
    b1 = best_time({name: (lambda m=m: [m.logits([t], batch_size=1) for t in texts[:batch1_rows]])
                    for name, m in models.items()}, rounds)
    b32 = best_time({name: (lambda m=m: m.logits(texts, batch_size=32)) for name, m in models.items()}, rounds)
    out_rows = {}
    for name in models:
        out_rows[name] = {"accuracy": float(np.mean(labels[name] == gold)),
                          "agreement": float(np.mean(labels[name] == labels["torch fp32"])),
                          "max_logit_diff": float(np.abs(logits[name] - logits["torch fp32"]).max()),
                          "b1_texts_per_second": batch1_rows / b1[name], "b32_texts_per_second": len(texts) / b32[name]}
    return {"rows": len(texts), "batch1_rows": batch1_rows, "results": out_rows, "export_parity": report.parity}


def tagger(run: Path, out: Path, batch1_rows: int, rounds: int) -> dict:
    from nlp_transfer import load_model
    from nlp_transfer.config import load_recipe, resolve_path
    from nlp_transfer.data.cards import load_card
    from nlp_transfer.data.readers import read_labelled
    from nlp_transfer.export.onnx_export import export_onnx
    from nlp_transfer.tasks.ner import entity_metrics

    recipe = load_recipe(run / "recipe.yaml")
    sentences = read_labelled(load_card(resolve_path(recipe.data, recipe)), "test").rows
    words, gold = [s["tokens"] for s in sentences], [s["tags"] for s in sentences]
    report = export_onnx(run, out, int8=True, check_rows=300)
    models = {"torch fp32": load_model(run, "cpu"), "onnx fp32": load_model(out, "cpu", variant="fp32"),
              "onnx int8": load_model(out, "cpu", variant="int8")}
    tags = {name: [t for t, _ in m.tag_words(words, batch_size=32)] for name, m in models.items()}
    b1 = best_time({name: (lambda m=m: [m.tag_words([w], batch_size=1) for w in words[:batch1_rows]])
                    for name, m in models.items()}, rounds)
    b32 = best_time({name: (lambda m=m: m.tag_words(words, batch_size=32)) for name, m in models.items()}, rounds)
    flat = {name: [t for sentence in v for t in sentence] for name, v in tags.items()}
    out_rows = {name: {"entity_f1": entity_metrics(gold, tags[name])["f1"],
                       "agreement": float(np.mean(np.array(flat[name]) == np.array(flat["torch fp32"]))),
                       "b1_texts_per_second": batch1_rows / b1[name], "b32_texts_per_second": len(words) / b32[name]}
                for name in models}
    return {"rows": len(words), "batch1_rows": batch1_rows, "results": out_rows, "export_parity": report.parity}


def encoder(name: str, out: Path, batch1_rows: int, rounds: int) -> dict:
    from nlp_transfer import load_model
    from nlp_transfer.export.onnx_export import export_onnx
    from nlp_transfer.encoders import EmbedSettings, Encoder

    texts = [line.rsplit("\t", 1)[0].strip() for line in (SHARED / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    report = export_onnx(name, out, int8=True, pooling="mean", normalize=True, max_length=128)
    settings = EmbedSettings("mean", [-1], True, 128, 32)
    single = EmbedSettings("mean", [-1], True, 128, 1)
    models = {"torch fp32": Encoder(name, False, "cpu"), "onnx fp32": load_model(out, "cpu", variant="fp32"),
              "onnx int8": load_model(out, "cpu", variant="int8")}
    vectors = {n: m.encode(texts, settings) for n, m in models.items()}
    b1 = best_time({n: (lambda m=m: [m.encode([t], single) for t in texts[:batch1_rows]]) for n, m in models.items()},
                   rounds)
    b32 = best_time({n: (lambda m=m: m.encode(texts, settings)) for n, m in models.items()}, rounds)
    out_rows = {}
    for n in models:
        cosine = np.sum(vectors[n] * vectors["torch fp32"], axis=1)  # both normalised
        out_rows[n] = {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
                       "b1_texts_per_second": batch1_rows / b1[n], "b32_texts_per_second": len(texts) / b32[n]}
    return {"rows": len(texts), "batch1_rows": batch1_rows, "results": out_rows, "export_parity": report.parity}


KEYS = {"classifier": ("accuracy", "agreement", "max_logit_diff"), "tagger": ("entity_f1", "agreement"),
        "encoder": ("min_cosine", "mean_cosine")}


def entries(kind: str, key: str, measured: dict) -> dict[str, float]:
    out = {}
    base = measured["results"]["torch fp32"]
    for name, row in measured["results"].items():
        slug = name.replace(" ", "_")
        for metric in KEYS[kind] + ("b1_texts_per_second", "b32_texts_per_second"):
            out[f"onnx/{key}/{slug}/{metric}"] = round(row[metric], 6 if "diff" in metric or "cosine" in metric else 4)
        if name != "torch fp32":
            for batch in ("b1", "b32"):
                out[f"onnx/{key}/{slug}/{batch}_speedup_vs_torch"] = round(
                    row[f"{batch}_texts_per_second"] / base[f"{batch}_texts_per_second"], 3)
    return out


def table(kind: str, title: str, measured: dict) -> list[str]:
    metrics = KEYS[kind]
    lines = [f"**{title}** ({measured['rows']} texts; batch 1 over the first {measured['batch1_rows']}):", "",
             "| model | " + " | ".join(metrics) + " | texts/s batch 1 | x torch | texts/s batch 32 | x torch |",
             "|---|" + "---:|" * (len(metrics) + 4)]
    base = measured["results"]["torch fp32"]
    for name, row in measured["results"].items():
        cells = [f"{row[m]:.6f}" if ("diff" in m or "cosine" in m) else f"{row[m]:.4f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {row['b1_texts_per_second']:.1f} | {row['b1_texts_per_second'] / base['b1_texts_per_second']:.2f}"
                     + f" | {row['b32_texts_per_second']:.1f} | {row['b32_texts_per_second'] / base['b32_texts_per_second']:.2f} |")
    return lines + [""]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", type=Path, default=Path("runs/sst2-minilm"))
    parser.add_argument("--tagger", type=Path, default=Path("runs/conll03-minilm-1ep"))
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--out", type=Path, default=Path("runs/exports"))
    parser.add_argument("--batch1-rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--classifier-only", metavar="KEY", default=None,
                        help="only the classifier, recorded as onnx/classifier/KEY/... in a section of its own "
                             "(e.g. sst2/minilm-l6-distilled for a distilled student)")
    args = parser.parse_args()
    if args.classifier_only:
        return classifier_only(args)
    command = (f"OMP_NUM_THREADS={torch.get_num_threads()} python -m benchmarks.onnx_speed --classifier {args.classifier} "
               f"--tagger {args.tagger} --encoder {args.encoder}")
    figures, lines = {}, [START, "## ONNX export: parity, int8 and speed", "",
                          f"`{command}` ({torch.get_num_threads()} threads for torch and onnxruntime alike; contenders "
                          f"alternate, best of {args.rounds} rounds). Each subject is exported with "
                          f"`nlp-transfer export RUN --format onnx --int8`, then the three models predict through "
                          f"`load_model` with the same tokenization and batching.", ""]
    measured = classifier(args.classifier, args.out / "sst2", args.batch1_rows, args.rounds)
    figures.update(entries("classifier", "sst2/minilm-l6", measured))
    lines += table("classifier", f"SST-2 dev, `{args.classifier}`", measured)
    if (args.tagger / "metrics.json").is_file():
        measured = tagger(args.tagger, args.out / "conll", args.batch1_rows, args.rounds)
        figures.update(entries("tagger", "conll03/minilm-l6", measured))
        lines += table("tagger", f"CoNLL-2003 test, `{args.tagger}` (entity F1)", measured)
    measured = encoder(args.encoder, args.out / "encoder", args.batch1_rows, args.rounds)
    figures.update(entries("encoder", f"embeddings/{args.encoder}", measured))
    lines += table("encoder", f"Embeddings of SST-2 dev, `{args.encoder}` (mean pooling, normalised; cosine to torch)",
                   measured)
    lines += ["int8: onnxruntime `quantize_dynamic`, per-channel int8 weights, activations quantized at run time, the "
              "products that read a GELU output (feed-forward down-projections) left in fp32 (see "
              "nlp_transfer.export.onnx_export._quantize for why). fp32 differences are float rounding between two kernels.",
              END]
    publish(figures, lines, START, END, command, not args.no_record)


def classifier_only(args) -> None:
    """One more classifier beside the main ONNX section (its own key and RESULTS.md section)."""
    import torch

    command = (f"OMP_NUM_THREADS={torch.get_num_threads()} python -m benchmarks.onnx_speed --classifier {args.classifier} "
               f"--classifier-only {args.classifier_only}")
    measured = classifier(args.classifier, args.out / args.classifier_only.replace("/", "-"), args.batch1_rows,
                          args.rounds)
    figures = entries("classifier", args.classifier_only, measured)
    start, end = f"<!-- onnx:{args.classifier_only}:start -->", f"<!-- onnx:{args.classifier_only}:end -->"
    lines = [start, f"`{command}` ({time.strftime('%Y-%m-%d')}; {torch.get_num_threads()} threads; exported with "
             f"`nlp-transfer export RUN --format onnx --int8`)", "",
             *table("classifier", f"SST-2 dev, `{args.classifier}`", measured), end]
    publish(figures, lines, start, end, command, not args.no_record)


def publish(figures: dict[str, float], lines: list[str], start: str, end: str, command: str, keep: bool) -> None:
    """Print the figures; with ``keep``, record them in results.json and their section in RESULTS.md."""
    for key, value in figures.items():
        print(f"{key}: {value}")
    if keep:
        record(figures, command)
        replace_section(RESULTS_MD, start, end, "\n".join(lines))


if __name__ == "__main__":
    main()
