"""Data cards (cards), their files read into labelled splits (files, readers, conll), labels by name (labels),
and turning them into model inputs (adapters)."""
from .cards import DataCard, load_card
from .readers import LoadedData, load_data

__all__ = ["DataCard", "LoadedData", "load_card", "load_data"]
