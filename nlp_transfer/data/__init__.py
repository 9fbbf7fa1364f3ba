"""Reading data (readers) and turning it into model inputs (adapters)."""
from .readers import DataCard, LoadedData, load_card, load_data

__all__ = ["DataCard", "LoadedData", "load_card", "load_data"]
