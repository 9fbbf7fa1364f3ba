"""One runtime for everything that runs a model: ``device="auto"`` is CUDA when torch sees it, else the CPU.

No GPU is needed: `torch.cuda.is_available` is patched to say what a machine would, and the test asserts the device
chosen (resolution only, no CUDA kernels run)."""
from __future__ import annotations

import pytest
import torch

from nlp_transfer import NLPTransferError
from nlp_transfer.runtime import Runtime, resolve_device


@pytest.mark.parametrize("cuda, expected", [(False, "cpu"), (True, "cuda")])
def test_auto_is_cuda_when_available_else_cpu(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
    assert resolve_device("auto") == expected
    assert resolve_device(None) == expected
    assert Runtime.resolve("auto", "bfloat16") == Runtime(expected, "bfloat16" if cuda else "float32")


def test_explicit_devices_are_checked_against_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(NLPTransferError, match="torch sees no CUDA GPU here; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(NLPTransferError, match="device 'gpu0' is not one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(NLPTransferError, match="this machine has 2 CUDA GPU"):
        resolve_device("cuda:2")


def test_load_model_and_the_encoder_place_the_model_on_the_resolved_device(monkeypatch, tmp_path, sst2_toy,
                                                                           tiny_bert):
    """load_model(device="auto") asks the runtime, and the model lands where it says (the CPU here: moving a
    model to a CUDA device that is not there cannot be faked, so the chosen device is what is asserted)."""
    import nlp_transfer
    from conftest import tiny_recipe
    from nlp_transfer.encoders import Encoder

    out = nlp_transfer.train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=2)).output_dir
    chosen = []
    real = Runtime.resolve.__func__

    def spy(cls, device="auto", dtype="float32"):
        runtime = real(cls, device, dtype)
        chosen.append((device, runtime.device))
        return runtime

    monkeypatch.setattr(Runtime, "resolve", classmethod(spy))
    model = nlp_transfer.load_model(out)
    assert chosen[-1] == ("auto", "cuda" if torch.cuda.is_available() else "cpu")
    assert str(model.device).startswith(chosen[-1][1])
    assert model.predict("a fine film")["label"] in ("negative", "positive")
    encoder = Encoder(str(tiny_bert))
    assert str(next(encoder.model.parameters()).device).startswith(chosen[-1][1])
    with pytest.raises(NLPTransferError, match="device 'tpu' is not one of"):
        nlp_transfer.load_model(out, device="tpu")


def test_the_cli_takes_device_and_precision(tmp_path, sst2_toy, tiny_bert, capsys):
    import nlp_transfer
    from conftest import tiny_recipe
    from nlp_transfer.cli import main

    out = nlp_transfer.train(tiny_recipe(sst2_toy, tiny_bert, tmp_path / "run", max_steps=2)).output_dir
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\na dull film\n")
    assert main(["predict", str(out), "--input", str(texts), "--output", str(tmp_path / "p.jsonl"), "--device", "cpu",
                 "--precision", "bfloat16"]) == 0  # bf16 is an accelerator setting: float32 on the CPU
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    if not torch.cuda.is_available():
        assert main(["predict", str(out), "--input", str(texts), "--output", str(tmp_path / "q.jsonl"),
                     "--device", "cuda"]) == 2
        assert "torch sees no CUDA GPU here" in capsys.readouterr().err
        assert not (tmp_path / "q.jsonl").exists()


def test_runtime_from_ddp_cpu_training_args_is_plain_cpu():
    """DDP on CPUs reports device cpu:0; the final scoring (calibration, test split) loads the model with it."""
    from types import SimpleNamespace

    import torch

    from nlp_transfer.runtime import Runtime

    runtime = Runtime.from_training_args(SimpleNamespace(device=torch.device("cpu", 0), bf16=True, fp16=False))
    assert runtime == Runtime("cpu", "float32")
    assert Runtime.resolve(runtime.device) == runtime
