"""Each shipped model names the one recipe file that rebuilds it, and that recipe still does.

The models were trained before the recipes became one file each (their ``config_file`` and
``init_chain`` name the run files of the time); ``provenance.recipe`` names the preset that
rebuilds them. An edit to that preset which would train another model fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from glsr_train.config import from_dict, load_recipe

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "presets" / "models").glob("*/model.json"))


@pytest.mark.parametrize("model_json", MODELS, ids=lambda p: p.parent.name)
def test_the_named_recipe_trains_the_shipped_models_config(model_json):
    training = json.loads(model_json.read_text())["training"]
    recipe = training["provenance"]["recipe"]
    stages = load_recipe(ROOT / recipe["file"]).stages
    name, last = stages[-1]
    assert name == recipe["stage"]
    # from_dict reads a checkpoint config of the older layout (augmentations in [schedule])
    assert last.to_dict() == from_dict(training["config"]).to_dict()
