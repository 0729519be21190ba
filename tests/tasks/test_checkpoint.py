"""model_from_checkpoint: a geo3d train checkpoint rebuilds its model, or says why not."""

import pytest
import torch


def test_model_from_checkpoint_rebuilds_and_checks_the_task(tmp_path):
    from geo3d.errors import InvalidInputError
    from geo3d.models import create
    from geo3d.tasks.checkpoint import CHECKPOINT_FORMAT, model_from_checkpoint, save_checkpoint

    kwargs = dict(num_classes=3, width=4, depth=2)
    model = create("pointnet2_seg", **kwargs)
    path = save_checkpoint(tmp_path / "m.pt", {"format": CHECKPOINT_FORMAT,
                                               "model": model.state_dict(),
                                               "model_name": "pointnet2_seg",
                                               "model_kwargs": kwargs})
    loaded, state = model_from_checkpoint(path, task="segmentation")
    assert not loaded.training and state["model_name"] == "pointnet2_seg"
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="not a detection model"):
        model_from_checkpoint(path, task="detection")
    bad = save_checkpoint(tmp_path / "bad.pt", {"format": CHECKPOINT_FORMAT,
                                                "model": model.state_dict(),
                                                "model_name": "pointnet2_seg",
                                                "model_kwargs": {**kwargs, "width": 8}})
    with pytest.raises(InvalidInputError, match="does not fit"):
        model_from_checkpoint(bad)
    nameless = save_checkpoint(tmp_path / "x.pt", {"format": CHECKPOINT_FORMAT, "model": {}})
    with pytest.raises(InvalidInputError, match="no model name"):
        model_from_checkpoint(nameless)
