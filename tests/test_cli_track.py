"""``geo3d track``: JSON detections in, tracks out; ground truth + noise scored; bad input."""

from __future__ import annotations

import json

from geo3d.cli import main


def _write_frames(folder, frames=5):
    folder.mkdir()
    for t in range(frames):
        if t % 2:  # geo3d detect's format
            dets = [{"label": "car", "score": 0.9, "box": {"x": 0.5 * t, "y": 0.0, "z": 0.0, "l": 4.0,
                                                           "w": 1.8, "h": 1.5, "yaw": 0.0}},
                    {"label": "pedestrian", "score": 0.8, "box": [10.0, 0.2 * t, 0.0, 0.6, 0.6, 1.7, 0.0]}]
            payload = {"detections": dets}
        else:
            payload = {"boxes": [[0.5 * t, 0.0, 0.0, 4.0, 1.8, 1.5, 0.0], [10.0, 0.2 * t, 0.0, 0.6, 0.6, 1.7, 0.0]],
                       "box_labels": [0, 1], "box_scores": [0.9, 0.8]}
        (folder / f"{t:06d}.json").write_text(json.dumps(payload))


def test_track_json_detections(tmp_path, capsys):
    _write_frames(tmp_path / "dets")
    out = tmp_path / "tracks.json"
    assert main(["track", "--detections", str(tmp_path / "dets"), "--out", str(out), "--metric", "distance"]) == 0
    assert str(out) in capsys.readouterr().out
    result = json.loads(out.read_text())
    frames = result["sequences"][0]
    assert len(frames) == 5 and "metrics" not in result
    last = frames[-1]["tracks"]
    assert [t["track_id"] for t in last] == [0, 1] and [t["label"] for t in last] == [0, 1]
    assert abs(last[0]["box"][0] - 2.0) < 0.1


def test_track_synthetic_ground_truth_with_noise(tmp_path, capsys):
    out = tmp_path / "tracks.json"
    args = ["track", "--data", "synthetic-sequences", "--length", "3", "--out", str(out), "--noise", "0.05"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "MOTA" in printed and "HOTA" in printed
    result = json.loads(out.read_text())
    assert len(result["sequences"][0]) == 3
    m = result["metrics"]
    assert 0.5 < m["MOTA"] <= 1 and 0 < m["HOTA"] <= 1 and set(m["per_class"]) <= {"car", "pedestrian", "cyclist"}


def test_track_bad_input_exits_2(tmp_path, capsys):
    assert main(["track", "--out", str(tmp_path / "t.json")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["track", "--detections", str(tmp_path / "missing"), "--out", str(tmp_path / "t.json")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.json").write_text("{not json")
    assert main(["track", "--detections", str(tmp_path / "bad"), "--out", str(tmp_path / "t.json")]) == 2
    assert "0.json" in capsys.readouterr().err
    (tmp_path / "bad" / "0.json").write_text(json.dumps({"boxes": [[1, 2, 3]]}))
    assert main(["track", "--detections", str(tmp_path / "bad"), "--out", str(tmp_path / "t.json")]) == 2
    assert "malformed" in capsys.readouterr().err
    assert main(["track", "--data", "kitti-tracking", "--out", str(tmp_path / "t.json")]) == 2
    assert "--root" in capsys.readouterr().err
