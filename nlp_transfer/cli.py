"""The ``nlp-transfer`` command line: one parser function and one handler per command.

Each command keeps its two functions side by side: ``_add_<command>`` declares its arguments and ``_cmd_<command>``
runs it, importing torch and the other heavy modules only when called, so bad input is reported in about a second.
Errors in the user's input print one line (``error: file: line N: what; fix``) and exit with 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import NLPTransferError


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="compute precision: bf16/fp16 autocast on a GPU (float32 on the CPU)")


# train

def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="fine-tune a model from a YAML recipe")
    parser.add_argument("recipe", help="recipe file, e.g. recipes/sst2_demo.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. training.learning_rate=3e-5")
    parser.add_argument("--seeds", help="train once per seed: a count (3: seeds 1,2,3) or a list (4,5,6); the recipe "
                                        "key seeds: OUTPUT_DIR/seed-N "
                                        "and OUTPUT_DIR/seeds.json with mean and std")
    parser.add_argument("--device", help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:N, mps (default: "
                                         "a GPU when there is one, or what the recipe's training: / static: say)")
    parser.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                        help="bf16/fp16 mixed precision on a GPU (default: float32, or the recipe's training.bf16/fp16)")


def _cmd_train(args) -> int:
    from .config import load_recipe

    seeds = {}
    if args.seeds is not None:
        from .seeds import count_note, parse_seeds

        seeds["seeds"] = parse_seeds(args.seeds)
        note = count_note(args.seeds)
        if note and os.environ.get("RANK", "0") == "0":
            print(note, file=sys.stderr)
    recipe = load_recipe(args.recipe, list(args.overrides), **seeds)  # a bad recipe is reported before torch loads
    from .training import train

    result = train(recipe, device=args.device, precision=args.precision)
    from .runtime import is_main_process

    if is_main_process():
        if recipe.seeds is not None:  # nlp_transfer.seeds printed each seed and the mean ± std
            print(f"  saved to {result.output_dir}")
        else:
            _print_summary(result.metrics, result.output_dir)
    return 0


def _print_summary(metrics: dict, output_dir) -> None:
    evaluated = metrics.get("eval") or {}
    scalars = {k: v for k, v in evaluated.items() if isinstance(v, float)}
    main = metrics.get("main_metric")
    print(f"\nnlp-transfer: {metrics['model']} on {metrics['data']} ({metrics['strategy']}), "
          f"{metrics['train']['runtime_s']:.0f} s training")
    if main in scalars:
        print(f"  {metrics['eval_split']} {main}: {scalars[main]:.4f}")
    print("  " + ", ".join(f"{k}={v:.4f}" for k, v in scalars.items() if k != main))
    print(f"  saved to {output_dir}")


# curve

def _add_curve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("curve", help="learning curves: each strategy trained per training-set size and seed, "
                                          "curve.json, curve.md (table and advice) and plots")
    parser.add_argument("recipe", help="recipe file, e.g. recipes/sst2_minilm.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the recipe, e.g. training.max_steps=50")
    parser.add_argument("--sizes", required=True, help="training rows per point, e.g. 32,100,300 (a size at or above "
                                                       "the training split's rows means all of them)")
    parser.add_argument("--strategies", required=True,
                        help="e.g. full,lora,feature-extraction; also last-n, gradual, static-average, static-bilstm")
    parser.add_argument("--seeds", required=True, help="one subset and initialisation per seed: a count (3: seeds "
                                                       "1,2,3) or a list (4,5,6)")
    parser.add_argument("--per-class", action="store_true", help="sizes are rows of each label (single-label "
                                                                 "classification), e.g. --sizes 8,16 --per-class")
    parser.add_argument("--min-steps", type=int, default=0,
                        help="fine-tuning points train at least this many optimizer steps (training.max_steps when "
                             "the epochs give fewer), so small sizes are not left untrained; default 0: the recipe's")
    parser.add_argument("--strategy-override", action="append", default=[], metavar="STRATEGY:KEY=VALUE",
                        help="an override for one strategy's points, e.g. lora:training.learning_rate=5e-4 "
                             "(repeatable)")
    parser.add_argument("--out", help="folder for the runs and curve.json (default: the recipe's output_dir)")
    parser.add_argument("--static-recipe", help="a recipe with static: vectors, for static-average / static-bilstm")


def _cmd_curve(args) -> int:
    from .analysis.curve import REPORT, advice_line, curve, parse_list, parse_strategy_overrides
    from .seeds import parse_seeds

    strategies = [part.strip() for part in args.strategies.split(",") if part.strip()]
    sizes = parse_list(args.sizes, "--sizes", 1, "32,100,300")
    seeds = parse_seeds(args.seeds)
    data = curve(args.recipe, sizes, strategies, seeds, args.out, list(args.overrides), args.static_recipe,
                 per_class=args.per_class, min_steps=args.min_steps,
                 strategy_overrides=parse_strategy_overrides(args.strategy_override))
    for item in data["advice"]:
        print("  " + advice_line(item))
    print(f"nlp-transfer: wrote {Path(data['output']) / 'curve.json'} and {Path(data['output']) / REPORT}")
    return 0


# tune

def _add_tune(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tune", help="hyperparameter search on Optuna: trials as run folders, resumable "
                                         "(OUT/study.db), best.yaml for train, trials table and plot "
                                         "(needs pip install 'nlp_transfer[tune]')")
    parser.add_argument("recipe", help="recipe file, e.g. recipes/sst2_demo.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the recipe, e.g. max_length=64")
    parser.add_argument("--trials", type=int, required=True,
                        help="finished (complete or pruned) trials to reach; run again to resume a killed search, or "
                             "with a larger count to search more")
    parser.add_argument("--space", help="YAML search space: KEY: {type: float|int|categorical, low, high, log, step, "
                                        "choices} (default: the strategy's, see nlp_transfer.analysis.tune.DEFAULT_SPACES)")
    parser.add_argument("--rows", type=int, help="search on a seeded subset of this many training rows (stratified); "
                                                 "best.yaml trains on all of them")
    parser.add_argument("--holdout", type=float,
                        help="the search selects on this seeded fraction of the training split (e.g. 0.1), leaving the "
                             "card's validation split as best.yaml's test split")
    parser.add_argument("--out", help="folder for the study, trials and best.yaml (default: the recipe's output_dir + "
                                      "'-tune')")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler (and of --holdout); default 0")
    parser.add_argument("--no-prune", action="store_true", help="train every trial to the end (default: the median "
                                                                "pruner stops poor trials at an evaluation)")
    parser.add_argument("--confirm", action="store_true", help="then train best.yaml into OUT/best (with --rows: on "
                                                               "the full training set)")
    parser.add_argument("--keep-weights", default="best", metavar="{best,all}",
                        help="whose weights the trial folders keep: the best trial's (default; the others keep their "
                             "metrics, predictions and recipe) or all")


def _cmd_tune(args) -> int:
    from .analysis.tune import tune

    result = tune(args.recipe, args.trials, space=args.space, rows=args.rows, holdout=args.holdout, out=args.out,
                  overrides=list(args.overrides), seed=args.seed, pruner=not args.no_prune, confirm=args.confirm,
                  keep_weights=args.keep_weights)
    summary = result.summary
    if result.best is None:
        states = ", ".join(f"{n} {s}" for s, n in summary["states"].items()) or "none"
        raise NLPTransferError(f"{result.output}: no trial completed ({states}), so there is no best recipe; run "
                               f"more trials (--trials N) or search without pruning (--no-prune)")
    best, metric = result.best, summary["main_metric"]
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    print(f"nlp-transfer: best trial {best['number']}: {metric} {best['value']:.4f} ({params})")
    confirmed = summary.get("confirm")
    if confirmed:
        test = f", test {confirmed['test']:.4f}" if isinstance(confirmed.get("test"), float) else ""
        print(f"  confirmed on the full training set: {metric} {confirmed['eval']:.4f}{test} ({confirmed['output_dir']})")
    print(f"nlp-transfer: wrote {result.best_recipe} (nlp-transfer train {result.best_recipe}), "
          f"{result.output / 'trials.md'} and {result.output / 'tune.json'}")
    return 0


# predict

def _add_predict(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="predict labels for texts with a trained model")
    parser.add_argument("model", help="a trained output directory")
    parser.add_argument("--input", required=True,
                        help="texts: .txt (one per line), .csv/.tsv or .jsonl; for NER also pre-tokenized .conll")
    parser.add_argument("--output", required=True,
                        help="where to write predictions: .jsonl, or .conll (NER: token<TAB>tag per line)")
    parser.add_argument("--text-column", default="text", help="column/key holding the text (csv, tsv, jsonl)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", action="store_true", help="score long texts by overlapping windows")
    parser.add_argument("--stride", type=int, default=64, help="tokens shared by neighbouring windows")
    parser.add_argument("--strategy", default="first", choices=("first", "average", "max"),
                        help="NER: how subword scores make a word's tag")
    parser.add_argument("--tag-column", default="-1", help="NER .conll input: tag column to ignore (index)")
    parser.add_argument("--raw-scores", action="store_true",
                        help="classifiers: the raw softmax/sigmoid scores, without the run's calibration")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="texts predicted and written together (resume granularity; memory grows with it)")
    _add_runtime_arguments(parser)


def _cmd_predict(args) -> int:
    """The output path and the inputs are checked before the model loads, so bad input fails fast with one line.
    Texts stream through `bulk.predict_file` (chunks, resumable, sharded under accelerate launch); pre-tokenized
    CoNLL input is read whole."""
    from .inference import load_model
    from .tasks import get_task

    conll_input, conll_output = _check_predict_paths(args)
    if args.chunk_size < 1:
        raise NLPTransferError(f"--chunk-size {args.chunk_size}: give at least 1 (texts predicted and written together)")
    if conll_input:
        inputs = _read_conll_input(args)
    else:
        import itertools

        from .data.readers import iter_texts

        # the first chunk is read before the model loads: a small file's bad row fails fast; a later one stops the run
        # when the reading reaches it, with its line number, the rows before it kept in OUTPUT.partial
        for _ in itertools.islice(iter_texts(args.input, args.text_column), args.chunk_size):
            pass
    device = args.device
    if not conll_input:  # sharded under accelerate launch: each process on its own GPU, not all on the first
        from .data.chunks import Shard
        from .runtime import resolve_device

        device = Shard.current().local_device(resolve_device(args.device))
    model = load_model(args.model, device, precision=args.precision)
    if conll_input:
        if not get_task(model.task).words_input:
            raise NLPTransferError(f"{args.input}: a CoNLL file is NER input, but {args.model} is a text classifier")
        count = _predict_conll(args, model, inputs, conll_output)
    else:
        count = _predict_stream(args, model, get_task(model.task).words_input)
    from .runtime import is_main_process

    if is_main_process():  # under accelerate launch the main process joined every process's rows
        print(f"nlp-transfer: wrote {count} predictions to {args.output}")
    return 0


def _check_predict_paths(args) -> tuple[bool, bool]:
    """Check --output, then --input; return whether the input and the output are CoNLL files."""
    from .data.readers import CONLL_SUFFIXES, INPUT_FIX, TEXT_SUFFIXES
    from .io import check_file_target, check_input_file

    check_file_target(args.output, "--output", example="predictions.jsonl")
    check_input_file(args.input, "input file", TEXT_SUFFIXES + CONLL_SUFFIXES, INPUT_FIX)
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise NLPTransferError(f"--output {args.output}: is the --input file, and predictions would replace the "
                               f"texts; write them to another file")
    conll_input = Path(args.input).suffix.lower() in CONLL_SUFFIXES
    conll_output = Path(args.output).suffix.lower() in CONLL_SUFFIXES
    if conll_output and not conll_input:
        raise NLPTransferError(f"--output {args.output}: CoNLL output needs pre-tokenized CoNLL input; write .jsonl instead")
    return conll_input, conll_output


def _read_conll_input(args) -> list:
    """The pre-tokenized sentences (lists of tokens) of a CoNLL --input."""
    from .data.conll import read_conll

    tag_column = int(args.tag_column) if args.tag_column.lstrip("-").isdigit() else args.tag_column
    return [s["tokens"] for s in read_conll(args.input, tag_column=tag_column)[0]]


def _predict_stream(args, model, words: bool) -> int:
    """Texts of --input, read and predicted chunk by chunk into --output (`bulk.predict_file`): labels and scores
    of a classifier, entity spans of a tagger; the rows written."""
    from .bulk import predict_file
    from .data.files import count_lines
    from .data.readers import iter_texts

    if words:
        def rows_of(texts):
            found = model.predict(texts, args.strategy, args.batch_size)
            return [{"text": text, "entities": spans} for text, spans in zip(texts, found)]
    else:
        def rows_of(texts):
            predictions = model.predict(texts, batch_size=args.batch_size, window=args.window, stride=args.stride,
                                        calibrated=not args.raw_scores)
            return [{"text": text, **prediction} for text, prediction in zip(texts, predictions)]
    settings = {"model": str(Path(args.model).resolve()), "text_column": args.text_column,
                "batch_size": args.batch_size, "window": args.window, "stride": args.stride,
                "strategy": args.strategy, "raw_scores": args.raw_scores, "precision": args.precision}
    return predict_file(rows_of, iter_texts(args.input, args.text_column), args.output, settings, args.input,
                        args.chunk_size, total=count_lines(args.input))


def _predict_conll(args, model, sentences: list, conll_output: bool) -> int:
    """Tags per token of pre-tokenized CoNLL sentences, as JSON lines or CoNLL; the sentences written."""
    from .io import write_jsonl_atomic, write_text_atomic

    results = model.predict_tokens(sentences, args.strategy, args.batch_size, progress=True)
    if not conll_output:
        return write_jsonl_atomic(args.output, results)
    blocks = ["\n".join(f"{token}\t{tag}" for token, tag in zip(r["tokens"], r["tags"])) for r in results]
    write_text_atomic(args.output, "\n\n".join(blocks) + "\n")
    return len(results)


# calibrate

def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calibrate", help="fit a trained classifier's temperature (and thresholds) on its "
                                              "validation split, into calibration.json")
    parser.add_argument("model", help="a trained output directory")
    parser.add_argument("--data", help="data card (default: the run's own, from its recipe.yaml)")
    parser.add_argument("--split", help="split to fit on (default: the run's eval_split); never a test split")
    parser.add_argument("--binary-target", help="binary: tune the positive label's threshold for f1, "
                                                "precision>=P or recall>=R")
    _add_runtime_arguments(parser)


def _cmd_calibrate(args) -> int:
    """Fit on the run's evaluation split (or --data/--split), save calibration.json, add the report to metrics.json."""
    import dataclasses
    import json

    from .calibration import summary_line
    from .evaluation import calibrate, run_evaluation_data
    from .io import write_json_atomic

    folder = Path(args.model)
    recipe, data, split = run_evaluation_data(folder, args.data, args.split)
    if recipe is not None and split == recipe.test_split:
        raise NLPTransferError(f"--split {split}: is the run's test split; calibrate on its validation split so the "
                               f"test scores stay honest")
    config = recipe.calibration if recipe else None
    if args.binary_target:
        from .config import CalibrationConfig

        config = dataclasses.replace(config or CalibrationConfig(), binary_target=args.binary_target)
    report = calibrate(folder, data, split, config, device=args.device, precision=args.precision)
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["calibration"] = report
        write_json_atomic(metrics_path, metrics)
    print(f"nlp-transfer: {folder} calibrated on {split} ({report['rows']} rows): {summary_line(report)}"
          + (f" (fitted on one half, scored on the other: ECE {report['crossfit']['ece']:.4f})"
             if report.get("crossfit") and not report.get("rejected") else "") + f"; saved {folder / 'calibration.json'}")
    return 0


# errors

def _add_errors(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("errors", help="error analysis of a trained model: confident mistakes, confusions, NER "
                                           "entity errors by kind, likely mislabelled training rows")
    parser.add_argument("model", help="a trained output directory")
    parser.add_argument("--data", help="data card (default: the run's own, from its recipe.yaml)")
    parser.add_argument("--split", help="split to analyse (default: the run's eval_split)")
    parser.add_argument("--out", help="folder for errors.md and the JSONL files (default: MODEL/errors)")
    parser.add_argument("--top", type=int, default=50, help="rows listed in errors.md per table")
    parser.add_argument("--label-issues", action="store_true",
                        help="also rank the training rows by how likely their label is wrong (needs cleanlab)")
    parser.add_argument("--train-rows", type=int, help="--label-issues on a seeded sample of this many training rows")
    parser.add_argument("--folds", type=int, default=5, help="--label-issues: cross-validation folds")
    _add_runtime_arguments(parser)


def _cmd_errors(args) -> int:
    from .analysis.error_analysis import analyse

    for option, value, low in (("--top", args.top, 1), ("--train-rows", args.train_rows, 10), ("--folds", args.folds, 2)):
        if value is not None and value < low:
            raise NLPTransferError(f"{option} {value}: must be at least {low}")
    result = analyse(args.model, args.data, args.split, args.out, args.top, args.label_issues, args.train_rows,
                     args.folds, device=args.device)
    summary = result.summary
    if summary["kind"] == "classification":
        what = f"{summary['mistakes']} mistakes in {summary['rows']} rows"
    else:
        what = f"{summary['errors']} entity errors (" + ", ".join(f"{k} {n}" for k, n in summary["by_kind"].items()) + ")"
    if "label_issues" in summary:
        what += f"; {summary['label_issues']['flagged']} training rows flagged as likely mislabelled"
    print(f"nlp-transfer: {what}; wrote " + ", ".join(str(path) for path in result.files))
    return 0


# evaluate

def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score a trained model on a data card split")
    parser.add_argument("model", help="a trained output directory")
    parser.add_argument("--data", required=True, help="data card, e.g. data_cards/sst2.md")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--output", help="write the metrics as JSON here too")
    _add_runtime_arguments(parser)


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate
    from .io import check_file_target, write_json_atomic

    if args.output:
        check_file_target(args.output, "--output", example="metrics.json")
    result = evaluate(args.model, args.data, args.split, device=args.device, precision=args.precision)
    if args.output:
        write_json_atomic(args.output, result)
    scalars = {k: v for k, v in result.items() if isinstance(v, float)}
    print(f"nlp-transfer: {args.model} on {result['data']}/{args.split} ({result['rows']} rows): "
          + ", ".join(f"{k}={v:.4f}" for k, v in scalars.items()))
    for column, block in (result.get("per_group") or {}).items():
        worst = block["groups"][block["worst"]]
        print(f"nlp-transfer: by {column}: worst group {block['worst']} ({block['metric']} "
              f"{worst[block['metric']]:.4f}, {worst['rows']} rows), gap to the best ({block['best']}) {block['gap']:.4f}")
    return 0


# embed

def _add_embed(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("embed", help="pooled embeddings of texts, streamed to disk (resumable)")
    parser.add_argument("model", help="alias, local directory or hub id of an encoder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="texts: .txt (one per line), .csv/.tsv or .jsonl")
    source.add_argument("--data", help="a data card; embeds the texts of --split")
    parser.add_argument("--split", default="train", help="with --data: which split")
    parser.add_argument("--text-column", default="text", help="column/key holding the text (csv, tsv, jsonl)")
    parser.add_argument("--output", required=True, help="folder for embeddings.npy + embeddings.json")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean", "max"))
    parser.add_argument("--layers", default="-1", help="hidden layer(s) to pool, e.g. -1 or -4,-3,-2,-1 (their mean)")
    parser.add_argument("--normalize", action="store_true", help="L2-normalize each vector")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="tokens read per text (default: 256, or the model's limit "
                                                       "when it reads fewer)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--chunk-size", type=int, default=8192, help="texts per saved chunk (the unit of resuming and of "
                                                                     "sharing out under accelerate launch)")
    _add_runtime_arguments(parser)


def _cmd_embed(args) -> int:
    """Texts stream from --input or the --data split into `encoders.embed` (chunks saved as they are ready,
    resumable, sharded under accelerate launch); the first chunk is read before the model loads, so a small file's
    bad row fails fast, and a later one stops the run with its line when the reading reaches it."""
    from .encoders import embed
    from .io import check_folder_target
    from .runtime import is_main_process

    check_folder_target(args.output, "--output")
    if args.chunk_size < 1:
        raise NLPTransferError(f"--chunk-size {args.chunk_size}: give at least 1 (texts embedded and saved together)")
    try:
        layers = [int(part) for part in args.layers.split(",")]
    except ValueError:
        raise NLPTransferError(f"--layers '{args.layers}': give integers separated by commas, e.g. -4,-3,-2,-1") from None
    texts, total = _embed_texts(args)
    array = embed(args.model, texts, args.output, pooling=args.pooling, layers=layers, normalize=args.normalize,
                  batch_size=args.batch_size, max_length=args.max_length, dtype=args.dtype,
                  chunk_size=args.chunk_size, progress=True, device=args.device, precision=args.precision,
                  total=total)
    if is_main_process():  # under accelerate launch the main process joined every process's chunks
        print(f"nlp-transfer: wrote {array.shape[0]} x {array.shape[1]} {args.dtype} embeddings to "
              f"{Path(args.output) / 'embeddings.npy'}")
    return 0


def _embed_texts(args) -> tuple:
    """(the texts of --split of the --data card, or of the --input file, read as they are embedded; their file's line
    count for the progress bar, None when there is no local file). The first chunk is read here once already."""
    import itertools

    from .data.files import count_lines
    from .data.readers import iter_rows, iter_texts

    if args.data:
        from .data.cards import load_card

        card = load_card(args.data)
        parts = [part for part in card.parts if args.split in part.splits] if card.parts else [card]
        paths = [Path(part.split_path(args.split)) for part in parts] or [Path(card.split_path(args.split))]

        def texts():
            for part in parts:
                yield from (row["text"] for row in iter_rows(part, args.split, labelled=False)[0])
    else:
        paths = [Path(args.input)]

        def texts():
            yield from (text for _, text in iter_texts(args.input, args.text_column))
    if not sum(1 for _ in itertools.islice(texts(), args.chunk_size)):  # an empty --input fails in iter_texts
        raise NLPTransferError(f"{paths[0]}: split '{args.split}' has no rows; add data or remove the split from "
                               f"{args.data}")
    total = sum(count_lines(path) for path in paths) if all(path.is_file() for path in paths) else None
    return texts(), total


# export

def _add_export(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a run: ONNX (fp32, --int8) checked against torch, or a LoRA run as "
                                           "a plain transformers model (adapter merged)")
    parser.add_argument("model", help="a trained output directory; for --format onnx also an encoder (embeddings)")
    parser.add_argument("--format", default="transformers", choices=("transformers", "onnx"),
                        help="transformers: a LoRA run with its adapter merged; onnx: an onnxruntime graph")
    parser.add_argument("--merge", action="store_true", help="(transformers) fold the adapter into the base weights")
    parser.add_argument("--int8", action="store_true", help="(onnx) also an int8 graph (onnxruntime dynamic "
                                                            "quantization), loaded by default")
    parser.add_argument("--check-texts", help="(onnx) texts to check the export on (.txt/.csv/.tsv/.jsonl; default: "
                                              "the run's evaluation split)")
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean", "max"), help="(onnx, encoders) pooling")
    parser.add_argument("--normalize", action="store_true", help="(onnx, encoders) L2-normalise the embeddings")
    parser.add_argument("--max-length", type=int, default=256, help="(onnx, encoders) tokens read per text")
    parser.add_argument("--output", required=True, help="folder for the exported model")


def _cmd_export(args) -> int:
    from .io import check_folder_target

    if args.format != "onnx" and args.int8:
        raise NLPTransferError("--int8 quantizes the ONNX graph: add --format onnx")
    check_folder_target(args.output, "--output")
    if args.format == "transformers":
        from .inference import export_merged

        out = export_merged(args.model, args.output)
        print(f"nlp-transfer: wrote the merged model to {out}")
        return 0
    from .export.onnx_export import export_onnx

    texts = None
    if args.check_texts:
        from .data.readers import read_texts

        texts = read_texts(args.check_texts)
    report = export_onnx(args.model, args.output, int8=args.int8, check_texts=texts, pooling=args.pooling,
                         normalize=args.normalize, max_length=args.max_length)
    checks = "; ".join(f"{variant}: " + ", ".join(f"{k} {v:.6g}" for k, v in row.items() if k != "rows")
                       for variant, row in report.parity.items())
    print(f"nlp-transfer: exported {args.model} ({report.kind}) to {report.folder} in {report.seconds:.0f} s, checked "
          f"against torch on {report.parity['fp32']['rows']} texts: {checks}")
    return 0


# compare

def _add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="side-by-side report (Markdown, HTML, plots) of finished runs")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folders holding metrics.json, e.g. runs/strategies/*")
    parser.add_argument("--out", default="reports/compare", help="folder for report.md, report.html and the PNG plots")
    parser.add_argument("--title", help="report title (default: the data sets and the run count)")


def _cmd_compare(args) -> int:
    from .analysis.compare import load_runs, write_report
    from .io import check_folder_target

    check_folder_target(args.out, "--out")
    report = write_report(load_runs(args.runs), args.out, args.title)
    print(report.table)
    print("\nnlp-transfer: wrote " + ", ".join(str(path) for path in report.files))
    return 0


# neighbours

def _add_neighbours(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("neighbours", help="nearest words in static vectors (GloVe, word2vec, fastText)",
                            description="Nearest neighbours by cosine similarity. --analogy A B C answers "
                                        "'A - B + C' (king man woman -> queen).")
    parser.add_argument("vectors", help="a GloVe / word2vec / fastText file (cached after the first load)")
    parser.add_argument("words", nargs="*", metavar="WORD", help="words whose neighbours to list")
    parser.add_argument("--topn", type=int, default=10)
    parser.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"), help="A - B + C, e.g. king man woman")
    parser.add_argument("--format", default="auto",
                        help="auto | glove | word2vec | word2vec-bin | fasttext | fasttext-bin")
    parser.add_argument("--limit", type=int, help="read only the first N words of the file")


def _cmd_neighbours(args) -> int:
    from .static.vectors import analogy, check_words, load_vectors, most_similar

    if not args.words and not args.analogy:
        raise NLPTransferError("give WORDs to list neighbours of, or --analogy A B C (A - B + C)")
    vectors = load_vectors(args.vectors, args.format, args.limit)
    check_words(vectors, list(args.words) + list(args.analogy or []))  # every word checked before any output
    queries = [(word, lambda word=word: most_similar(vectors, word, topn=args.topn)) for word in args.words]
    if args.analogy:
        a, b, c = args.analogy
        queries.append((f"{a} - {b} + {c}", lambda: analogy(vectors, a, b, c, topn=args.topn)))
    for title, query in queries:
        print(f"{title}:")
        for word, score in query():
            print(f"  {score:.4f}  {word}")
    return 0


# serve

def _add_serve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="HTTP prediction server for a trained folder: POST /predict, GET /health "
                                          "(needs pip install 'nlp_transfer[serve]')")
    parser.add_argument("model", help="a trained output directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                            "only; 0.0.0.0: every interface, no authentication)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    parser.add_argument("--max-batch", type=int, default=32, help="most texts in one model call shared by "
                                                                  "concurrent requests (default 32)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests "
                                                                       "after its first (default 5; 0: no waiting)")
    parser.add_argument("--max-texts", type=int, default=64, help="most texts in one request (default 64; more: 413)")
    parser.add_argument("--max-bytes", type=int, default=1_000_000,
                        help="largest request body in bytes (default 1000000; more: 413)")
    _add_runtime_arguments(parser)


def _cmd_serve(args) -> int:
    """Options are checked before the model loads (nlp_transfer.export.serve.serve checks them first)."""
    from .export.serve import serve

    serve(args.model, host=args.host, port=args.port, device=args.device, precision=args.precision,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_texts=args.max_texts, max_bytes=args.max_bytes)
    return 0


# cards

def _add_cards(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cards", help="check data cards and list them: card files and folders of cards")
    parser.add_argument("paths", nargs="*", default=["data_cards"], metavar="CARD_OR_FOLDER",
                        help="card files (.md) and folders of cards (default: data_cards)")


def _cmd_cards(args) -> int:
    from .data.cards import load_card

    for path in _card_files(args.paths):
        card = load_card(path)
        missing = [s for s in card.splits if card.format != "datasets" and not Path(card.split_path(s)).exists()]
        state = f"missing files for {', '.join(missing)}" if missing else "ok"
        print(f"{card.name:20s} {card.task:26s} {card.language or '-':6s} splits={','.join(card.splits)}  [{state}]")
    return 0


def _card_files(paths: list) -> list:
    """The card files named, and those in the folders named (each checked before any card loads)."""
    from .data.cards import CARD_FIX, CARD_SUFFIXES, is_card
    from .io import check_input_file

    cards = []
    for given in paths:
        place = Path(given)
        if place.is_dir():
            found = sorted(p for p in place.glob("*.md") if is_card(p))
            if not found:
                raise NLPTransferError(f"no data cards (*.md) in the folder '{place}'; name a card file or a folder "
                                       f"of cards, e.g. nlp-transfer cards data_cards")
            cards.extend(found)
        else:
            cards.append(check_input_file(place, "data card", CARD_SUFFIXES, CARD_FIX, is_card))
    return cards


# the parser and the dispatch

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlp-transfer", description="Transfer learning for NLP: fine-tune pretrained encoders from recipes.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_curve, _add_tune, _add_predict, _add_calibrate, _add_errors, _add_evaluate,
                _add_embed, _add_export, _add_compare, _add_neighbours, _add_serve, _add_cards):
        add(sub)
    return parser


COMMANDS = {"train": _cmd_train, "curve": _cmd_curve, "tune": _cmd_tune, "predict": _cmd_predict,
            "calibrate": _cmd_calibrate, "errors": _cmd_errors, "evaluate": _cmd_evaluate, "embed": _cmd_embed,
            "export": _cmd_export, "compare": _cmd_compare, "neighbours": _cmd_neighbours, "serve": _cmd_serve,
            "cards": _cmd_cards}


def parse_args(argv: list[str] | None):
    """Arguments, with ``key=value`` overrides allowed after options too (``train R --seeds 1,2 key=value``): argparse
    stops filling a positional list at the first option, so what it leaves over joins the overrides."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NLPTransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
