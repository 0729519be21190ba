"""scripts/train_zoo.py: a recipe trains, tests and lands in a zoo that loads offline."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("train_zoo", ROOT / "scripts" / "train_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_zoo"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_recipe_builds_its_model_and_names_a_known_dataset():
    from geo3d import models
    from geo3d.datasets.by_name import list_datasets

    zoo = _script()
    for name, recipe in zoo.RECIPES.items():
        assert recipe.train["name"] in list_datasets() and recipe.train["split"] == "train"
        assert recipe.evaluation["split"] == "test"
        assert models.create(recipe.model, **recipe.model_kwargs) is not None, name


@pytest.mark.parametrize("name", ["pointnet2_cls", "hand_pose_small"])
def test_a_shrunk_recipe_trains_and_reloads_from_its_zoo(tmp_path, monkeypatch, name):
    import geo3d.models.pretrained as pretrained
    from geo3d.models import create, list_pretrained

    zoo = _script()
    recipe = zoo.RECIPES[name]
    small = dataclasses.replace(
        recipe, epochs=1, batch_size=2,
        model_kwargs={**recipe.model_kwargs, "width": 4} if name == "pointnet2_cls"
        else recipe.model_kwargs,
        train={**recipe.train, "size": 2, **({"num_points": 128} if "num_points" in recipe.train
                                              else {"width": 40, "height": 30})},
        evaluation={**recipe.evaluation, "size": 2,
                    **({"num_points": 128} if "num_points" in recipe.evaluation
                       else {"width": 40, "height": 30})})
    metrics = zoo.train_recipe(name, small, "cpu", tmp_path / "zoo", tmp_path / "runs")
    manifest = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    entry = manifest[name]
    assert entry["metrics"] == metrics and entry["steps"] == 1
    assert entry["command"] == f"python scripts/train_zoo.py --only {name}"
    monkeypatch.setattr(pretrained, "ZOO_DIR", tmp_path / "zoo")
    assert list_pretrained() == [name]
    model = create(name, pretrained=True)
    assert not model.training and all(torch.isfinite(p).all() for p in model.parameters())


def test_cuda_without_a_gpu_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        _script().main(["--device", "cuda", "--only", "pointnet2_cls"])
    assert exc.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err
