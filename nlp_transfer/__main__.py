"""``python -m nlp_transfer`` and ``accelerate launch -m nlp_transfer``."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
