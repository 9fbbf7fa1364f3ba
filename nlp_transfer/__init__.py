"""nlp_transfer: adapt a pretrained encoder to your task from one recipe or one Python call.

    import nlp_transfer
    result = nlp_transfer.train("recipes/sst2_demo.yaml")
    model = nlp_transfer.load_model(result.output_dir)
    model.predict(["a gorgeous, witty film"])
"""
from .version import __version__  # noqa: E402

# compare and tune import nothing heavy at import time (matplotlib, optuna, torch load when they run)
from .analysis.compare import compare  # noqa: E402  (stdlib only at import; matplotlib loads when plotting)
from .config import Recipe, load_recipe  # noqa: E402
from .errors import NLPTransferError  # noqa: E402
from .analysis.tune import tune  # noqa: E402  (likewise: optuna, torch and transformers load when a search starts)


def train(recipe, overrides=None, **kwargs):
    """Fine-tune from a recipe file, dict or Recipe; see `nlp_transfer.training.train`."""
    from .training import train as _train

    return _train(recipe, overrides, **kwargs)


def load_model(path, device="auto", trust_remote_code=False, precision="float32", variant=None):
    """Load a trained output directory (or an ONNX export of one: ``variant`` "fp32" / "int8") for prediction
    (``device="auto"``: CUDA when present); see `nlp_transfer.inference.load_model`."""
    from .inference import load_model as _load_model

    return _load_model(path, device, trust_remote_code, precision, variant)


def embed(model, texts, output=None, **options):
    """Pooled embeddings of texts (input order); see `nlp_transfer.encoders.embed`."""
    from .encoders import embed as _embed

    return _embed(model, texts, output, **options)


def evaluate(model, data, split="validation", batch_size=64, device="auto", precision="float32"):
    """Score a trained model (its folder, or what `load_model` returned) on a data card split; see
    `nlp_transfer.evaluation.evaluate`."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(model, data, split, batch_size, device=device, precision=precision)


__all__ = ["NLPTransferError", "Recipe", "compare", "embed", "evaluate", "load_model", "load_recipe", "train", "tune",
           "__version__"]
