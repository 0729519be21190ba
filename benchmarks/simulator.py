"""How fast is the LiDAR simulator, and where does a frame's time go?

Questions answered (2 cores, median of warm frames):

* one default 64-channel frame of ``SyntheticLidar`` (about 115k rays), end to end:
  scene generation, ray casting, the sensor model and labelling (target: <= 0.5 s);
* of that, the share spent ray casting: the same rays re-cast into the same scene with
  ``open3d.t.geometry.RaycastingScene`` in the same process (the reference);
* a frame of ``SyntheticSequences`` after the first, when only transforms change.

Writes ``simulator.json`` and ``simulator.md`` to ``--out`` (atomically) and prints them.
All of it runs on the CPU (Open3D ray casting, numpy): ``--device`` is accepted and
recorded only.

Run: ``python benchmarks/simulator.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from geo3d.datasets import SyntheticLidar, SyntheticSequences
from geo3d.io import atomic_write_bytes
from geo3d.sim import SimConfig, Traffic, generate_layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_arg, resolve_device  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _raycast_only(seed: int) -> float:
    """Seconds to cast one default frame's rays into a pre-built scene (reference)."""
    config = SimConfig()
    rng = np.random.default_rng(seed)
    layout = generate_layout(config.scene, rng)
    traffic = Traffic(layout, config.motion, rng)
    poses = traffic.poses(traffic.initial_state())
    scene = layout.scene(poses[:-1])  # the last pose is the ego's
    pose = config.lidar.mount(poses[-1])
    config.lidar.scan(scene, pose, rng)  # builds the RaycastingScene once
    start = time.perf_counter()
    config.lidar.scan(scene, pose, rng)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/bench/simulator", help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    add_device_arg(parser, cpu_only="the simulator (Open3D ray casting, numpy)")
    args = parser.parse_args(argv)
    device = resolve_device(parser, args)
    repeats = 5 if args.quick else 21

    frames = SyntheticLidar("val", repeats + 1, seed=0)
    frames[0]  # warm-up: imports, template caches
    sizes = []
    frame_s = _median_seconds(lambda i: sizes.append(frames[i + 1].num_nodes), repeats)
    scan_s = statistics.median(_raycast_only(i) for i in range(repeats))
    stream = SyntheticSequences("val", 1, repeats + 1, seed=0).iter_frames(0)
    next(stream)
    seq_s = _median_seconds(lambda i: next(stream), repeats)
    result = {
        "frame_seconds": round(frame_s, 4),
        "frame_target_seconds": 0.5,
        "frame_meets_target": frame_s <= 0.5,
        "points_per_frame": int(statistics.median(sizes)),
        "rays_per_frame": SimConfig().lidar.num_rays,
        "sensor_scan_seconds": round(scan_s, 4),
        "scan_share_of_frame": round(scan_s / frame_s, 3),
        "sequence_frame_seconds": round(seq_s, 4),
        "repeats": repeats,
        "device": device,
        "device_note": "the simulator runs on the CPU whatever --device says",
    }
    from geo3d.bench.results import ResultRow

    result["results"] = [ResultRow(
        benchmark="simulator", task="64-beam LiDAR frame", model="SyntheticLidar",
        metric="seconds per frame", value=frame_s, higher_is_better=False,
        latency_ms=1000 * frame_s, notes=f"{result['points_per_frame']:,} points").to_dict()]
    md = "\n".join([
        "# geo3d simulator", "",
        "| measure | value |", "| --- | ---: |",
        *(f"| {k} | {v} |" for k, v in result.items() if k != "results"), "",
    ])
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "simulator.json", json.dumps(result, indent=2).encode())
    atomic_write_bytes(out / "simulator.md", md.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
