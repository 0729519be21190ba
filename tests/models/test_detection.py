"""The CenterPoint-style detectors: grid ops, targets <-> decoding, loss, contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from geo3d.errors import InvalidInputError
from geo3d.geometry.boxes import box_iou_bev, points_in_boxes
from geo3d.models import create
from geo3d.models.detection import BEVGrid, crop_and_voxelize, scatter_to_bev

SMALL_GRID = dict(x_range=(-12.8, 12.8), y_range=(-12.8, 12.8), cell_size=0.4)
SMALL = {
    "pointnet2_det": dict(width=8, max_neighbors=8, **SMALL_GRID),
    "dgcnn_det": dict(width=8, emb_channels=8, k=6, depth=2, **SMALL_GRID),
}
BOXES = torch.tensor([[4.3, 2.1, -0.9, 4.2, 1.8, 1.6, 0.4],
                      [-6.1, -3.3, -1.0, 0.7, 0.6, 1.7, -2.0],
                      [7.7, -8.2, -1.0, 1.8, 0.6, 1.6, 3.0]])
LABELS = torch.tensor([0, 1, 2])


def _frame(seed: int, dtype=torch.float32) -> Data:
    """Ground points plus points on the surfaces of three boxes."""
    g = torch.Generator().manual_seed(seed)
    ground = torch.rand(600, 3, generator=g, dtype=torch.float64) * 24 - 12
    ground[:, 2] = -1.8
    inside = []
    for b in BOXES.double():
        u = torch.rand(150, 3, generator=g, dtype=torch.float64) - 0.5
        u[:, 0] = torch.sign(u[:, 0]) * 0.5  # on the two long sides
        local = u * b[3:6]
        c, s = math.cos(b[6]), math.sin(b[6])
        xy = torch.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], 1)
        inside.append(torch.cat([xy + b[:2], local[:, 2:] + b[2]], 1))
    pos = torch.cat([ground, *inside]).to(dtype)
    return Data(pos=pos, boxes=BOXES.to(dtype), box_labels=LABELS.clone())


def _model(name: str, **kw):
    torch.manual_seed(0)
    return create(name, **{**SMALL[name], **kw})


# --------------------------------------------------------------------------- grid ops


def test_grid_checks():
    assert BEVGrid().shape == (256, 256)
    assert BEVGrid(**SMALL_GRID).shape == (64, 64)
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        BEVGrid(x_range=(-10.0, 10.0), cell_size=0.3)
    with pytest.raises(InvalidInputError, match="z_range"):
        BEVGrid(z_range=(2.0, -2.0))
    with pytest.raises(InvalidInputError, match="voxel_size"):
        BEVGrid(voxel_size=-1.0)
    with pytest.raises(InvalidInputError, match="cell_size"):
        create("pointnet2_det", cell_size=0.0)


def test_crop_and_voxelize_is_idempotent_and_exact():
    grid = BEVGrid(**SMALL_GRID, voxel_size=0.5)
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(3000, 3, generator=g) * 30 - 15
    batch = torch.zeros(3000, dtype=torch.long)
    keep = crop_and_voxelize(pos, batch, grid)
    kept = pos[keep]
    assert bool((keep[1:] > keep[:-1]).all())
    inside = (pos[:, :2].abs() < 12.8).all(1) & (pos[:, 2] >= -4) & (pos[:, 2] < 4)
    # reference: one point (the first) per occupied voxel of the inside points
    lo = torch.tensor([-12.8, -12.8, -4.0])
    cells = {}
    for i in inside.nonzero().view(-1).tolist():
        cells.setdefault(tuple(((pos[i] - lo) / 0.5).floor().long().tolist()), i)
    assert sorted(cells.values()) == keep.tolist()
    again = crop_and_voxelize(kept, batch[: kept.shape[0]], grid)
    assert again.tolist() == list(range(kept.shape[0]))


def test_scatter_to_bev_matches_a_loop():
    grid = BEVGrid(x_range=(-1.6, 1.6), y_range=(-3.2, 3.2), cell_size=0.4)
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(200, 3, generator=g) * 7 - 3.5
    feats = torch.rand(200, 4, generator=g)
    batch = (torch.arange(200) >= 120).long()
    bev = scatter_to_bev(feats, pos, batch, 2, grid)
    h, w = grid.shape
    assert bev.shape == (2, 5, h, w)
    ref = torch.zeros(2, 5, h, w)
    for i in range(200):
        r, c = math.floor((pos[i, 0] + 1.6) / 0.4), math.floor((pos[i, 1] + 3.2) / 0.4)
        if 0 <= r < h and 0 <= c < w:
            b = int(batch[i])
            ref[b, :4, r, c] = torch.maximum(ref[b, :4, r, c], feats[i])
            ref[b, 4, r, c] += 1
    ref[:, 4] = torch.log1p(ref[:, 4])
    torch.testing.assert_close(bev, ref)


# --------------------------------------------------------------------------- head


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_targets_decode_back_to_the_boxes(dtype):
    model = _model("pointnet2_det").to(dtype)
    head = model.head
    boxes = BOXES.to(dtype)
    heat, cell, reg = head.targets([(boxes, LABELS)], dtype, torch.device("cpu"))
    h, w = heat.shape[-2:]
    assert heat.shape == (1, 3, 32, 32) and heat.dtype == dtype
    assert int((heat == 1).sum()) == 3 and float(heat.max()) == 1.0
    # the peak of each box is in its class channel, at the cell holding its centre
    for k in range(3):
        r, c = int(cell[k]) // w, int(cell[k]) % w
        assert heat[0, int(LABELS[k]), r, c] == 1
        assert r == math.floor((boxes[k, 0] + 12.8) / 0.8) and c == math.floor((boxes[k, 1] + 12.8) / 0.8)
    # outputs that equal the targets decode to the boxes
    logits = torch.where(heat == 1, 10.0, -10.0).to(dtype)
    maps = torch.zeros(1, 8, h, w, dtype=dtype)
    maps.view(8, -1)[:, cell] = reg.T
    outputs = {"heatmap": logits, "offset": maps[:, 0:2], "z": maps[:, 2:3], "size": maps[:, 3:6],
               "yaw": maps[:, 6:8]}
    pred = model.decode(outputs)[0]
    order = pred.box_labels.argsort()
    torch.testing.assert_close(pred.boxes[order], BOXES, atol=1e-4, rtol=1e-4)
    assert pred.box_labels[order].tolist() == [0, 1, 2]
    assert bool((pred.box_scores > 0.99).all())
    # boxes off the grid are not targets
    off = torch.tensor([[30.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]], dtype=dtype)
    heat, cell, reg = head.targets([(off, torch.tensor([0]))], dtype, torch.device("cpu"))
    assert cell.numel() == 0 and float(heat.sum()) == 0


def test_decode_nms_and_order():
    model = _model("pointnet2_det", nms_iou=0.1)
    h = w = 32
    logits = torch.full((1, 3, h, w), -10.0)
    logits[0, 0, 10, 10] = 3.0  # two neighbouring car peaks (not 3x3 maxima of each other)
    logits[0, 0, 10, 12] = 2.0
    logits[0, 1, 20, 5] = 1.0
    maps = torch.zeros(1, 8, h, w)
    maps[:, 3:5] = math.log(3.0)  # 3 m x 3 m boxes: the two cars (1.6 m apart) overlap
    maps[:, 7] = 1.0
    out = {"heatmap": logits, "offset": maps[:, :2], "z": maps[:, 2:3], "size": maps[:, 3:6],
           "yaw": maps[:, 6:8]}
    pred = model.decode(out)[0]
    assert pred.box_labels.tolist() == [0, 1]  # the weaker car was suppressed
    assert pred.box_scores.tolist() == sorted(pred.box_scores.tolist(), reverse=True)
    assert float(box_iou_bev(pred.boxes[:1], pred.boxes[1:])[0, 0]) == 0
    model.nms_iou = 1.0
    assert model.decode(out)[0].boxes.shape[0] == 3


# --------------------------------------------------------------------------- model contract


@pytest.mark.parametrize("name", ["pointnet2_det", "dgcnn_det"])
def test_forward_loss_backward_and_batching(name):
    model = _model(name)
    assert model.task == "detection"
    frames = [_frame(0), _frame(1)]
    batch = Batch.from_data_list(frames)
    model.train()
    out = model(batch)
    assert out["heatmap"].shape == (2, 3, 32, 32) and out["size"].shape == (2, 3, 32, 32)
    loss = model.loss(out, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    model.eval()
    with torch.no_grad():
        both = model(batch)
        alone = model(Data(pos=frames[1].pos))  # no boxes needed to run the model
    for key in both:
        torch.testing.assert_close(both[key][1:], alone[key], rtol=1e-4, atol=1e-4)
    preds = model.predict(batch)
    assert len(preds) == 2 and all(p.boxes.shape[1] == 7 for p in preds)
    assert all(p.box_scores.shape == p.box_labels.shape == (p.boxes.shape[0],) for p in preds)


def test_float64_and_state_dict():
    model = _model("pointnet2_det").eval()
    frame = _frame(0)
    with torch.no_grad():
        ref = model(frame)
        m64 = _model("pointnet2_det").double().eval()
        m64.load_state_dict(model.state_dict())
        out64 = m64(_frame(0, torch.float64))
    torch.testing.assert_close(out64["heatmap"].float(), ref["heatmap"], rtol=1e-3, atol=1e-3)
    assert out64["size"].dtype == torch.float64


def test_input_errors():
    model = _model("pointnet2_det").eval()
    frame = _frame(0)
    out = model(frame)
    with pytest.raises(InvalidInputError, match="data.boxes"):
        model.loss(out, Data(pos=frame.pos))
    with pytest.raises(InvalidInputError, match="box_labels"):
        model.loss(out, Data(boxes=BOXES, box_labels=torch.tensor([0, 1, 7])))
    with pytest.raises(InvalidInputError, match="box_labels"):
        model.loss(out, Data(boxes=BOXES, box_labels=torch.tensor([0.0, 1.0, 2.0])))
    with pytest.raises(InvalidInputError, match="data.pos"):
        model(Data(pos=frame.pos[:, :2]))
    with pytest.raises(InvalidInputError, match="data.x"):
        _model("pointnet2_det", in_channels=1)(Data(pos=frame.pos))
    # nothing inside the grid: an empty map, no detections
    far = Data(pos=frame.pos + 100)
    assert model.predict(far)[0].boxes.shape == (0, 7)


@pytest.mark.slow
def test_learns_a_frame():
    """A few dozen steps on two frames: every box is found again (BEV IoU > 0.5)."""
    torch.manual_seed(0)
    model = create("pointnet2_det", width=8, max_neighbors=8, x_range=(-12.8, 12.8),
                   y_range=(-12.8, 12.8), cell_size=0.4)
    frame = _frame(0)
    batch = Batch.from_data_list([frame, _frame(1)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        model.loss(model(batch), batch).backward()
        opt.step()
    pred = model.predict(frame)[0]
    for k in range(3):
        same = pred.box_labels == LABELS[k]
        assert same.any(), f"class {int(LABELS[k])} not detected"
        assert float(box_iou_bev(pred.boxes[same], BOXES[k:k + 1]).max()) > 0.5
    assert points_in_boxes(frame.pos, pred.boxes[:3]).ge(0).any()


def test_evaluate_and_evaluator():
    from geo3d.tasks import evaluate

    model = _model("pointnet2_det")
    res = evaluate(model, [_frame(0), _frame(1)], batch_size=2)
    assert {"loss", "mAP_3d", "mAP_bev", "AP_3d", "nuscenes_mAP", "num_samples"} <= set(res)
    assert res["num_samples"] == 2 and math.isfinite(res["loss"])
    assert set(res["AP_3d"]) == {"car", "pedestrian", "cyclist"}
    assert model.make_evaluator().key_metric == "mAP_3d"
