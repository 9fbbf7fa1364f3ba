"""The shipped recipes and data cards are valid and point at real files."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from nlp_transfer.config import load_recipe, resolve_path
from nlp_transfer.data.cards import load_card
from nlp_transfer.data.readers import load_data

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
CARDS = sorted((REPO / "data_cards").glob("*.md"))
SPACES = sorted((REPO / "recipes" / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads_and_names_an_existing_card(path, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(path)
    card = load_card(resolve_path(recipe.data, recipe))
    from nlp_transfer.tasks import get_task

    assert card.task in get_task(recipe.task).card_tasks
    if recipe.backend == "trainer":  # the training: block makes valid TrainingArguments (checked when a run starts)
        from nlp_transfer.backends.trainer import training_arguments

        training_arguments(recipe, "accuracy", recipe.eval_split in card.splits, tmp_path)


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_search_space_fits_the_recipe_it_is_named_after(path, monkeypatch):
    from nlp_transfer.analysis.tune import fit_space, load_space

    monkeypatch.chdir(REPO)
    recipe = load_recipe(REPO / "recipes" / path.name)  # recipes/spaces/NAME.yaml searches recipes/NAME.yaml
    space = load_space(path)
    assert space
    fit_space(space, recipe, str(path))  # every key, bound and choice checked against the recipe


@pytest.mark.parametrize("path", CARDS, ids=[p.name for p in CARDS])
def test_every_card_has_licence_language_and_prose(path):
    card = load_card(path)
    assert card.license and card.language
    assert len(card.description.split()) > 40  # source, licence and biases written out for people


def test_shipped_sample_reads_with_its_documented_counts():
    data = load_data(REPO / "data_cards" / "sst2_sample.md")
    assert data.label_names == ["negative", "positive"]
    assert len(data.splits["train"]) == 2000 and len(data.splits["validation"]) == 872
    assert sum(data.splits["train"]["label"]) == 1121  # positives, as samples/sst2/SOURCE.md says


def test_full_sst2_card_reads_the_shared_data_when_present():
    card = load_card(REPO / "data_cards" / "sst2.md")
    if not Path(card.split_path("validation")).exists():
        pytest.skip("../shared/data/sst2 is not beside this checkout")
    data = load_data(card, ["validation"])
    assert len(data.splits["validation"]) == 872
