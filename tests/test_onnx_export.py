"""ONNX export: tiny models of each kind exported, run in plain onnxruntime and compared with torch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli_error, tiny_recipe
from nlp_transfer import load_model, train
from nlp_transfer.errors import NLPTransferError

from nlp_transfer.export.onnx_export import export_onnx

TEXTS = ["a gorgeous , witty , seductive movie .", "dull and lifeless", "it is a film", "bad", "the best film of the year"]


@pytest.fixture(scope="module")
def classifier_run(tiny_bert, tmp_path_factory):
    from conftest import write_sst2_card

    folder = tmp_path_factory.mktemp("onnx-cls")
    train(tiny_recipe(write_sst2_card(folder / "data"), tiny_bert, folder / "run", num_train_epochs=2))
    return folder / "run"


def plain_onnxruntime(folder, texts, output, file="model.onnx"):
    """The export as a user without nlp_transfer runs it: tokenizer files + onnxruntime."""
    import onnxruntime
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = onnxruntime.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    feed = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
    return session.run([output], feed)[0]


def test_classifier_export_reproduces_torch_and_loads_with_the_same_api(classifier_run, tmp_path):
    report = export_onnx(classifier_run, tmp_path / "onnx", int8=True)
    assert report.kind == "classifier" and set(report.files) == {"fp32", "int8"}
    assert report.parity["fp32"]["max_abs_diff"] <= 1e-4 and report.parity["fp32"]["label_agreement"] == 1.0
    assert report.parity["fp32"]["rows"] == 64  # the run's validation rows
    assert 0.0 <= report.parity["int8"]["label_agreement"] <= 1.0
    import onnx

    int8_ops = {node.op_type for node in onnx.load(str(tmp_path / "onnx" / report.files["int8"])).graph.node}
    assert "MatMulInteger" in int8_ops or "DynamicQuantizeMatMul" in int8_ops  # the products are int8
    assert "Gather" in int8_ops and not any("Dequantize" in op and "Linear" in op for op in int8_ops)  # tables fp32
    torch_model = load_model(classifier_run)
    exported = load_model(tmp_path / "onnx")  # default: the int8 graph the export was asked for
    fp32 = load_model(tmp_path / "onnx", variant="fp32")
    np.testing.assert_allclose(fp32.logits(TEXTS), torch_model.logits(TEXTS), atol=1e-4)
    assert [p["label"] for p in fp32.predict(TEXTS)] == [p["label"] for p in torch_model.predict(TEXTS)]
    assert len(exported.predict(TEXTS, window=True, stride=8)) == len(TEXTS)
    # the calibrated probabilities inside the graph equal what predict gives
    probabilities = plain_onnxruntime(tmp_path / "onnx", TEXTS, "probabilities")
    expected = [[p["scores"][name] for name in fp32.label_names] for p in fp32.predict(TEXTS)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    readme = (tmp_path / "onnx" / "README.md").read_text()
    assert "Parity" in readme and "int8" in readme
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["parity"]["fp32"]["rows"] == 64
    with pytest.raises(NLPTransferError, match="already an ONNX export"):
        export_onnx(tmp_path / "onnx", tmp_path / "again")
    with pytest.raises(NLPTransferError, match="variant"):
        load_model(tmp_path / "onnx", variant="fp16")


def test_multi_label_export_has_the_sigmoid_and_thresholds(tiny_bert, tmp_path):
    from conftest import topic_card

    card = topic_card(tmp_path)
    train(tiny_recipe(card, tiny_bert, tmp_path / "run", num_train_epochs=4, learning_rate=3e-3))
    export_onnx(tmp_path / "run", tmp_path / "onnx")
    texts = ["vote election minister", "atom cell experiment match goal"]
    probabilities = plain_onnxruntime(tmp_path / "onnx", texts, "probabilities")
    assert probabilities.shape == (2, 3) and not np.allclose(probabilities.sum(1), 1.0)  # sigmoid, not softmax
    exported, original = load_model(tmp_path / "onnx"), load_model(tmp_path / "run")
    assert exported.calibration.thresholds == original.calibration.thresholds is not None
    assert [p["label"] for p in exported.predict(texts)] == [p["label"] for p in original.predict(texts)]


def test_tagger_export_gives_the_same_entities(tiny_bert, conll_toy, tmp_path):
    recipe = tiny_recipe(conll_toy, tiny_bert, tmp_path / "run", num_train_epochs=1)
    train({**recipe, "task": "token-classification"})
    report = export_onnx(tmp_path / "run", tmp_path / "onnx", int8=True, check_rows=30)
    assert report.kind == "tagger" and report.parity["fp32"]["tag_agreement"] == 1.0
    assert "entity_f1" in report.parity["int8"]
    text = "Angela Merkel visited Paris and Berlin on Tuesday with the European Union delegation."
    exported = load_model(tmp_path / "onnx", variant="fp32")
    assert exported.predict(text) == load_model(tmp_path / "run").predict(text)
    probabilities = plain_onnxruntime(tmp_path / "onnx", [text], "probabilities")
    assert probabilities.shape[-1] == len(exported.label_names)


def test_encoder_export_has_pooling_and_normalisation_inside(tiny_bert, tmp_path):
    from nlp_transfer import embed

    report = export_onnx(tiny_bert, tmp_path / "onnx", pooling="mean", normalize=True, max_length=64)
    assert report.kind == "encoder" and report.parity["fp32"]["min_cosine"] >= 0.9999
    vectors = plain_onnxruntime(tmp_path / "onnx", TEXTS, "embeddings")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # normalised in the graph
    reference = embed(str(tiny_bert), TEXTS, pooling="mean", normalize=True, max_length=64)
    np.testing.assert_allclose(vectors, reference, atol=1e-4)
    encoder = load_model(tmp_path / "onnx")
    np.testing.assert_allclose(embed(encoder, TEXTS, pooling="mean", normalize=True, max_length=64), reference, atol=1e-4)
    with pytest.raises(NLPTransferError, match="exported with pooling=mean"):
        embed(encoder, TEXTS, pooling="cls", normalize=True, max_length=64)


def test_export_command(classifier_run, tmp_path, capsys):
    from nlp_transfer.cli import main

    assert main(["export", str(classifier_run), "--format", "onnx", "--output", str(tmp_path / "out")]) == 0
    assert "fp32" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.onnx").is_file()
    (tmp_path / "file").write_text("x")
    assert "is an existing file" in cli_error(capsys, ["export", classifier_run, "--format", "onnx", "--output",
                                                       tmp_path / "file"])
    assert "--int8" in cli_error(capsys, ["export", classifier_run, "--int8", "--output", tmp_path / "x"])


def test_the_server_serves_an_onnx_export(classifier_run, tmp_path):
    import urllib.request

    from nlp_transfer.export.serve import create_app, start_in_thread

    export_onnx(classifier_run, tmp_path / "onnx")
    exported = load_model(tmp_path / "onnx")
    with start_in_thread(create_app(exported), port=0) as server:
        request = urllib.request.Request(server.url + "/predict", data=json.dumps({"texts": TEXTS}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answered = json.loads(response.read())["predictions"]
    assert [p["label"] for p in answered] == [p["label"] for p in load_model(classifier_run).predict(TEXTS)]
    assert not server.running
