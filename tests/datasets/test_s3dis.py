"""S3DIS on tiny rooms written in the Stanford3dDataset_v1.2 layout."""

import numpy as np
import pytest
import torch

from geo3d.datasets import S3DIS
from geo3d.errors import FileFormatError, InvalidInputError

ROOMS = {  # area -> room -> annotation files
    1: {"office_1": ["ceiling_1", "chair_1", "chair_2", "stairs_1"], "hallway_1": ["floor_1"]},
    2: {"WC_1": ["wall_1", "door_1"]},
}


def _write(path, rng, n):
    rows = np.concatenate([rng.uniform(-5, 5, (n, 3)), rng.integers(0, 256, (n, 3))], axis=1)
    np.savetxt(path, rows, fmt=["%.3f"] * 3 + ["%d"] * 3)
    return rows


@pytest.fixture()
def root(tmp_path):
    rng = np.random.default_rng(0)
    for area, rooms in ROOMS.items():
        for room, objects in rooms.items():
            folder = tmp_path / f"Area_{area}" / room / "Annotations"
            folder.mkdir(parents=True)
            (folder.parent / f"{room}.txt").write_text("0 0 0 0 0 0\n")  # the room file: unused
            for k, name in enumerate(objects):
                _write(folder / f"{name}.txt", rng, 10 + k)
    return tmp_path


def test_rooms_labels_and_instances(root):
    ds = S3DIS(root, areas=[1, 2])
    assert [d.room for d in ds] == ["Area_1/hallway_1", "Area_1/office_1", "Area_2/WC_1"]
    data = ds[1]
    names = S3DIS.CLASS_NAMES
    # Annotations sorted by name: ceiling_1 (10), chair_1 (11), chair_2 (12), stairs_1 (13).
    expected_y = [names.index("ceiling")] * 10 + [names.index("chair")] * 23 + [names.index("clutter")] * 13
    assert data.y.tolist() == expected_y
    assert data.instance.tolist() == [0] * 10 + [1] * 11 + [2] * 12 + [3] * 13
    assert data.pos.shape == data.x.shape == (46, 3)
    assert data.pos.dtype == data.x.dtype == torch.float32 and data.y.dtype == torch.long
    assert data.x.min() >= 0 and data.x.max() <= 1
    table = np.loadtxt(root / "Area_1" / "office_1" / "Annotations" / "chair_1.txt")
    np.testing.assert_allclose(data.pos[10:21].numpy(), table[:, :3], atol=1e-5, rtol=0)
    np.testing.assert_allclose(data.x[10:21].numpy(), table[:, 3:] / 255, atol=1e-6, rtol=0)
    assert len(S3DIS(root, areas=[2])) == 1


def test_stray_character_raises_or_is_skipped(root):
    path = root / "Area_2" / "WC_1" / "Annotations" / "wall_1.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(".", ".\x1e", 1)  # like Area_5/hallway_6
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FileFormatError, match=r"wall_1\.txt' line 3"):
        S3DIS(root, areas=[2])[0]
    data = S3DIS(root, areas=[2], skip_bad_lines=True)[0]
    assert data.num_nodes == 11 + 10 - 1  # door_1 (11 rows) + wall_1 without the bad row


def test_truncated_empty_and_out_of_range_files(root):
    folder = root / "Area_1" / "hallway_1" / "Annotations"
    path = folder / "floor_1.txt"
    path.write_text(path.read_text()[:-6])  # the last row is cut short
    with pytest.raises(FileFormatError, match=r"floor_1\.txt' line 10"):
        S3DIS(root, areas=[1])[0]
    path.write_text("")
    with pytest.raises(FileFormatError, match="floor_1.txt.*empty"):
        S3DIS(root, areas=[1])[0]
    path.write_text("1 2 3 300 0 0\n")
    with pytest.raises(FileFormatError, match="0..255"):
        S3DIS(root, areas=[1])[0]
    path.unlink()
    with pytest.raises(FileFormatError, match="no Annotations"):
        S3DIS(root, areas=[1])[0]


def test_missing_areas_and_bad_arguments(root):
    with pytest.raises(FileFormatError, match="Area_5"):
        S3DIS(root, areas=[5])
    for areas in ([], [0], "1", [1, 1], [1.0], 1, [True]):
        with pytest.raises(InvalidInputError, match="areas"):
            S3DIS(root, areas=areas)
    with pytest.raises(InvalidInputError, match="skip_bad_lines"):
        S3DIS(root, areas=[1], skip_bad_lines="no")
