"""The model zoo: save/load round trip, integrity checks, and regression tests of every
shipped checkpoint on its fixed synthetic test split."""

import math

import pytest
import torch

import geo3d.models.pretrained as zoo
from geo3d.datasets.by_name import make_dataset
from geo3d.errors import FileFormatError, InvalidInputError
from geo3d.models import create, list_pretrained
from geo3d.tasks import evaluate
from geo3d.tasks.evaluate import key_metric
from torch_geometric.data import Data


def _tiny_kwargs():
    return dict(in_channels=0, num_classes=3, width=4, depth=2)


def test_save_then_create_pretrained_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    assert list_pretrained() == []
    torch.manual_seed(0)
    model = create("pointnet2_cls", **_tiny_kwargs())
    zoo.save_pretrained("pointnet2_cls", model, _tiny_kwargs(), {"OA": 0.5},
                        {"name": "synthetic-shapes", "split": "test", "size": 2},
                        command="python -c pass")
    assert list_pretrained() == ["pointnet2_cls"]
    loaded = create("pointnet2_cls", pretrained=True)
    assert not loaded.training
    data = Data(pos=torch.rand(64, 3))
    model.eval()
    torch.testing.assert_close(loaded(data), model(data), rtol=0, atol=0)
    create("pointnet2_cls", pretrained=True, num_classes=3)  # repeating a kwarg is fine
    with pytest.raises(InvalidInputError, match="num_classes"):
        create("pointnet2_cls", pretrained=True, num_classes=5)
    with pytest.raises(InvalidInputError, match="no pretrained weights for dgcnn_seg"):
        create("dgcnn_seg", pretrained=True)


def test_truncated_or_altered_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    model = create("pointnet2_cls", **_tiny_kwargs())
    path = zoo.save_pretrained("pointnet2_cls", model, _tiny_kwargs(), {}, {}, command="")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FileFormatError, match="SHA-256"):
        create("pointnet2_cls", pretrained=True)
    (tmp_path / "zoo.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="manifest"):
        list_pretrained()


@pytest.mark.parametrize("name", list_pretrained())
def test_shipped_checkpoint_reproduces_its_recorded_metrics(name):
    entry = zoo.pretrained_entry(name)
    model = create(name, pretrained=True)
    spec = dict(entry["evaluation"])
    named = make_dataset(spec.pop("name"), spec.pop("split"), spec.pop("size"),
                         task=model.task, **spec)
    got = evaluate(model, named.dataset, batch_size=entry.get("batch_size", 2),
                   class_names=named.class_names)
    key, higher = key_metric(model)
    assert key in entry["metrics"], f"{name}: the zoo must record its key metric {key}"
    directions = {key: higher, "OA": True, "mAcc": True, "mIoU": True}
    for metric, higher_is_better in directions.items():
        recorded = entry["metrics"].get(metric)
        if not isinstance(recorded, float) or math.isnan(recorded):
            continue
        drop = recorded - got[metric] if higher_is_better else got[metric] - recorded
        assert drop <= entry["tolerance"], (
            f"{name}: {metric} {got[metric]:.4f} vs recorded {recorded:.4f}")
