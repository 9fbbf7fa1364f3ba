"""The benchmark entry point's bookkeeping: goals decide the exit code, RESULTS.md keeps everything but its section."""
from __future__ import annotations

import importlib

bench = importlib.import_module("benchmarks.__main__")


def test_a_ratio_below_its_goal_is_reported_and_fails_the_run():
    figures = {"train/sst2/vs_padded_trainer_speedup": 6.0, "train/sst2/vs_dynamic_trainer_speedup": 0.97,
               "predict/sst2/vs_pipeline_speedup": 1.8, "predict/sst2/agreement_with_pipeline": 1.0}
    missed = bench.failures(figures)
    assert missed == ["train/sst2/vs_dynamic_trainer_speedup = 0.97 < 1.0"]
    figures["train/sst2/vs_dynamic_trainer_speedup"] = 1.2
    assert bench.failures(figures) == []
    figures["predict/sst2/agreement_with_pipeline"] = 0.98  # faster but different predictions does not count
    assert len(bench.failures(figures)) == 1


def test_results_section_is_replaced_in_place(tmp_path, monkeypatch):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nbefore\n\n<!-- bench:start -->\nold table\n<!-- bench:end -->\n\nafter\n")
    monkeypatch.setattr(bench, "RESULTS_MD", results)
    bench.update_results("| new | table |", "python -m benchmarks --quick")
    text = results.read_text()
    assert "old table" not in text and "| new | table |" in text
    assert text.startswith("# Results\n\nbefore\n") and text.rstrip().endswith("after")
    assert "`python -m benchmarks --quick`" in text and text.count("<!-- bench:start -->") == 1


def test_the_table_shows_each_ratio_next_to_its_goal():
    text = bench.table({"train/sst2/vs_padded_trainer_speedup": 6.26, "train/sst2/nlp_transfer_samples_per_s": 89.7,
                        "train/sst2/padded_trainer_samples_per_s": 14.3})
    assert "| train SST-2, samples/s vs Trainer, padded to 128 | 89.7 | 14.3 | **6.26x** | >= 1.5x |" in text


# ------------------------------------------------------------------ the GPU mode (benchmarks/gpu.py), run on the CPU

import hashlib  # noqa: E402

import pytest  # noqa: E402

from benchmarks import gpu, speed  # noqa: E402
from benchmarks.record_run import RESULTS  # noqa: E402

CONLL = speed.SHARED / "conll2003" / "train.txt"


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@pytest.fixture(scope="module")
def gpu_mode_on_cpu(tiny_bert):
    """The GPU mode's whole code path on the CPU with the tiny BERT: 2 steps of batch 4, one round, 48 texts."""
    before = _digest(RESULTS), _digest(gpu.RESULTS_MD)
    figures = gpu.gpu_benchmark(device="cpu", model=str(tiny_bert), steps=2, batches=(4,), ner_batch=4, rounds=1,
                                predict_texts=48, embed_texts=48, record=False, sst2_rows=speed.sst2_rows()[:64])
    return figures, before, (_digest(RESULTS), _digest(gpu.RESULTS_MD))


def test_gpu_mode_runs_on_the_cpu_and_reports_every_figure(gpu_mode_on_cpu):
    figures, before, after = gpu_mode_on_cpu
    train = "gpu/train/sst2/b4/"
    keys = [train + f"{name}_samples_per_s" for name in ("nlp_transfer", "dynamic_trainer", "padded_trainer", "bare_loop")]
    keys += [train + "vs_dynamic_trainer_speedup", train + "vs_padded_trainer_speedup", train + "vs_bare_loop"]
    keys += [f"gpu/predict/sst2/{k}" for k in ("nlp_transfer_texts_per_s", "pipeline_texts_per_s", "vs_pipeline_speedup",
                                               "agreement_with_pipeline")]
    keys += [f"gpu/embed/{k}" for k in ("nlp_transfer_texts_per_s", "st_texts_per_s", "vs_sentence_transformers_speedup",
                                        "mean_cosine", "min_cosine")]
    for key in keys:
        assert isinstance(figures.get(key), float) and figures[key] > 0, key
    assert 0 < figures["gpu/predict/sst2/agreement_with_pipeline"] <= 1  # reported, whatever its value
    assert figures["gpu/predict/sst2/labels_identical"] in (0.0, 1.0)
    assert figures["gpu/embed/mean_cosine"] > 0.9999  # both in float32 on the CPU: the same vectors
    assert not any(k.endswith("float32_vs_pipeline_speedup") for k in figures)  # the CPU computes in float32 only
    assert after == before  # record=False: results.json and RESULTS.md untouched
    text = gpu.table(figures)
    assert "| train SST-2 batch 4, samples/s vs bare PyTorch loop (ceiling) |" in text
    assert "| predict: label agreement with the pipeline |" in text


def test_gpu_mode_trains_ner_on_conll(gpu_mode_on_cpu):
    figures = gpu_mode_on_cpu[0]
    if not CONLL.is_file():
        pytest.skip(f"CoNLL-2003 is not in {CONLL.parent}: the GPU mode's NER part was not exercised")
    for key in ("nlp_transfer_samples_per_s", "dynamic_trainer_samples_per_s", "vs_dynamic_trainer_speedup"):
        assert figures[f"gpu/train/conll03/b4/{key}"] > 0


def test_gpu_figures_are_recorded_with_the_gpu_name_and_versions(tmp_path):
    results, results_md = tmp_path / "results.json", tmp_path / "RESULTS.md"
    results_md.write_text(f"# Results\n\nbefore\n\n{gpu.START}\nunmeasured\n{gpu.END}\n\nafter\n")
    info = {"device_name": "NVIDIA H200", "precision": "bfloat16", "torch": "2.9", "cuda": "12.8",
            "transformers": "5.17.0", "tokenizers": "0.23.2"}
    figures = {"gpu/train/sst2/b128/vs_bare_loop": 0.61234567, "gpu/train/sst2/b128/nlp_transfer_samples_per_s": 3000.0}
    gpu.save(figures, info, "python -m benchmarks --device cuda --quick", results, results_md)
    import json

    saved = json.loads(results.read_text())
    assert saved["bench/gpu/train/sst2/b128/vs_bare_loop"]["value"] == 0.6123
    assert saved["bench/gpu/device_name"]["value"] == "NVIDIA H200"
    assert saved["bench/gpu/versions/tokenizers"]["value"] == "0.23.2"
    assert set(saved["bench/gpu/precision"]) == {"value", "command", "date"}
    assert saved["bench/gpu/precision"]["command"] == "python -m benchmarks --device cuda --quick"
    text = results_md.read_text()
    assert "unmeasured" not in text and "NVIDIA H200" in text and "**0.61x**" in text
    assert text.startswith("# Results\n\nbefore\n") and text.rstrip().endswith("after")


def test_gpu_goals_are_checked_like_the_cpu_ones():
    figures = {"gpu/train/sst2/b32/vs_dynamic_trainer_speedup": 1.4, "gpu/train/sst2/b128/vs_dynamic_trainer_speedup": 0.88,
               "gpu/train/sst2/b128/vs_bare_loop": 0.81, "gpu/predict/sst2/vs_pipeline_speedup": 2.1,
               "gpu/predict/sst2/agreement_with_pipeline": 1.0, "gpu/embed/vs_sentence_transformers_speedup": 1.3,
               "gpu/embed/mean_cosine": 0.99999}
    assert gpu.failures(figures) == ["gpu/train/sst2/b128/vs_dynamic_trainer_speedup = 0.88 < 1.3"]
    figures.update({"gpu/train/sst2/b128/vs_dynamic_trainer_speedup": 1.3, "gpu/predict/sst2/agreement_with_pipeline": 0.99,
                    "gpu/embed/mean_cosine": 0.9995})
    assert len(gpu.failures(figures)) == 2  # faster with other labels or other vectors does not count


def test_the_command_line_reaches_the_gpu_mode(monkeypatch):
    seen = {}
    monkeypatch.setattr(gpu, "gpu_benchmark", lambda **kwargs: seen.update(kwargs) or {})
    argv = ["--device", "cpu", "--gpu-mode", "--quick", "--model", "tiny", "--steps", "3", "--only", "train"]
    assert bench.main(argv) == 0  # on the CPU the GPU goals are shown, never checked
    assert seen["device"] == "cpu" and seen["model"] == "tiny" and seen["steps"] == 3 and seen["only"] == {"train"}
    assert seen["record"] is False and seen["batches"] == (32, 128) and seen["precision"] is None
    assert gpu.effective_precision("cuda", None) == "bfloat16" and gpu.effective_precision("cpu", "bfloat16") == "float32"
    with pytest.raises(SystemExit):
        bench.main(["--model", "tiny"])  # a GPU-mode option without the GPU mode


def test_cuda_without_a_gpu_says_how_to_run_the_mode_on_the_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit, match="--gpu-mode"):
        gpu.check_device("cuda")


def test_the_collate_benchmark_times_both_collators(tiny_bert):
    from benchmarks import collate_speed

    figures = collate_speed.speed(batch_size=8, rounds=1, count=64, model=str(tiny_bert))
    assert set(figures) == {"b8/nlp_transfer_ms", "b8/data_collator_with_padding_ms",
                            "b8/vs_data_collator_with_padding_speedup"}
    assert all(value > 0 for value in figures.values())


def test_curve_figures_come_from_curve_json_and_every_grid_command_parses():
    from benchmarks import curves
    from nlp_transfer.cli import build_parser

    cell = {"mean": 0.81234, "std": 0.0123, "n": 3, "values": [0.8, 0.81, 0.82], "train_time_s": 12.345}
    data = {"unit": "rows per label", "points": {"contrastive": {"8": cell}},
            "advice": [{"size": 8, "best": {"mean": 0.81234}, "cheapest": {"mean": 0.80011}}]}
    figures = curves.entries(data, "sst2-fewshot")
    assert figures == {"curve/sst2-fewshot/contrastive/8pc/mean": 0.8123, "curve/sst2-fewshot/contrastive/8pc/std": 0.0123,
                       "curve/sst2-fewshot/contrastive/8pc/n": 3.0,
                       "curve/sst2-fewshot/contrastive/8pc/train_time_s": 12.35,
                       "curve/sst2-fewshot/advice/8pc/best_mean": 0.8123,
                       "curve/sst2-fewshot/advice/8pc/cheapest_mean": 0.8001}
    for grid, argv in curves.GRIDS.items():  # the recorded commands are ones the CLI accepts
        args = build_parser().parse_args(["curve", *argv])
        assert args.out == str(curves.output_of(grid).relative_to(curves.ROOT))
        assert curves.command_line(grid).startswith("OMP_NUM_THREADS=1 nlp-transfer curve recipes/")


def test_anchor_figures_average_the_finished_seeds_and_every_command_parses(tmp_path):
    import json

    import yaml

    from benchmarks import anchors
    from nlp_transfer.cli import parse_args

    figure = anchors.Figure("f", "runs/x", "nlp-transfer train r.yaml --seeds 3", "eval", "accuracy", "sst2/m/x",
                            "dev", 0.9, "as above")
    for seed, value in ((1, 0.88), (2, 0.90)):  # seeds.json not written yet: the finished seeds are read
        (tmp_path / f"seed-{seed}").mkdir()
        (tmp_path / f"seed-{seed}" / "metrics.json").write_text(json.dumps(
            {"main_metric": "accuracy", "eval": {"accuracy": value, "loss": 0.3}}))
    found = anchors.spread(tmp_path, figure)
    assert found["values"] == [0.88, 0.90] and found["mean"] == pytest.approx(0.89)
    entries, shown = anchors.figure_entries(figure, found)
    assert entries == {"sst2/m/x/dev_accuracy_mean": 0.89, "sst2/m/x/dev_accuracy_std": 0.0141,
                       "sst2/m/x/dev_accuracy_n": 2}
    assert shown == "**0.8900 ± 0.0141** (2 seeds: 0.8800, 0.9000)"
    entries, shown = anchors.figure_entries(figure, {"mean": 0.9, "std": 0.0, "values": [0.9]})
    assert entries == {"sst2/m/x/dev_accuracy_mean": 0.9, "sst2/m/x/dev_accuracy_n": 1}  # no std for one seed
    assert shown == "**0.9000** (1 seed)"
    for each in anchors.FIGURES:  # each recorded command is one the CLI accepts, and writes the folder it reads
        argv = each.command.split()
        args = parse_args(argv[argv.index("nlp-transfer") + 1:])
        assert args.command == "train" and args.seeds
        written = [o.split("=", 1)[1] for o in args.overrides if o.startswith("output_dir=")]
        if not written:
            written = [yaml.safe_load((anchors.REPO / args.recipe).read_text())["output_dir"]]
        assert written == [each.folder]


def test_each_few_shot_experiment_is_recorded_with_the_command_that_measures_it():
    from types import SimpleNamespace

    from benchmarks.fewshot_setfit import experiment_command

    args = SimpleNamespace(models="minilm-l6,mpnet-base", per_label="8,16", seeds="1,2,3,4,5")
    points = [{"model": "minilm-l6", "per_label": 8, "seed": seed, "system": "contrastive[pooling-cls]",
               "settings": ["strategy.pooling=cls"]} for seed in (1, 2)]
    points += [{"model": "minilm-l6", "per_label": 8, "seed": 3, "system": "setfit-e2e", "settings": []}]
    assert experiment_command(points, "minilm-l6", 8, "contrastive", args) == \
        "python -m benchmarks.fewshot_setfit --models minilm-l6,mpnet-base --per-label 8,16 --seeds 1,2,3,4,5"
    assert experiment_command(points, "minilm-l6", 8, "contrastive[pooling-cls]", args) == (
        "python -m benchmarks.fewshot_setfit --models minilm-l6 --per-label 8 --seeds 1,2 --systems contrastive "
        "--set strategy.pooling=cls --tag pooling-cls")
    assert experiment_command(points, "minilm-l6", 8, "setfit-e2e", args).endswith("--seeds 3 --systems setfit-e2e")
