"""How fast are geo3d's neighbour operators, against the plain libraries they wrap?

Questions answered (CPU, all cores, median of warm repeats; each comparison is timed
interleaved in one process, with a short pause between calls so one call's idle OpenMP
threads do not slow the next):

* ``knn_graph`` (16,384 uniform points, k=16, exact ties): time / plain scipy
  ``cKDTree`` build + ``query(k=17, workers=-1)`` (target: <= 1.2);
* ``fps`` (4,096 of 16,384 points): speed-up over the standard vectorised torch loop
  (min-distance vector + argmax per step; target: >= 10);
* ``radius_graph``, ``knn`` and ``voxel_grid`` at 16,384 points (reported);
* 10^6 points: ``knn_graph`` k=16 (and plain scipy doing the same search, for
  reference), ``radius_graph`` (~16 neighbours), ``fps`` ratio 0.05, ``voxel_grid``:
  time and peak memory, each in a fresh process (peak memory =
  increase of ``getrusage(RUSAGE_SELF).ru_maxrss`` over the process's state just before
  the call, i.e. the extra resident memory the call needed).

With ``--device cuda`` the same geo3d calls at 16,384 points (and the torch FPS loop)
are also timed on the GPU (geo3d's torch backend; ``torch.cuda.synchronize`` around each
call), beside their CPU times; the library comparisons and the large runs stay on the CPU.

Writes ``neighbors.json`` and ``neighbors.md`` to ``--out`` (atomically) and prints the
table. ``--quick`` uses fewer repeats and 2*10^5 instead of 10^6 points.

Run: ``python benchmarks/neighbors.py [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import scipy
import torch
from scipy.spatial import cKDTree

from geo3d.geometry import fps, knn, knn_graph, radius_graph, voxel_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_arg, resolve_device, synchronize  # noqa: E402

SETTLE_S = 0.15  # pause between timed calls (lets spinning OpenMP threads go to sleep)


def torch_fps_reference(pos: torch.Tensor, n_samples: int, start: int = 0) -> torch.Tensor:
    """The standard vectorised FPS loop: min-distance vector, argmax each step.

    (The fastest of the variants tried on CPU: in-place minimum, integer row index.)
    """
    dist = torch.full((pos.shape[0],), float("inf"), dtype=pos.dtype, device=pos.device)
    out = torch.empty(n_samples, dtype=torch.long, device=pos.device)
    cur = start
    out[0] = cur
    for i in range(1, n_samples):
        torch.minimum(dist, ((pos - pos[cur]) ** 2).sum(dim=1), out=dist)
        cur = int(torch.argmax(dist))
        out[i] = cur
    return out


def radius_for(n: int, neighbours: float) -> float:
    """Radius holding ``neighbours`` points on average in a unit cube of ``n`` points."""
    return (3.0 * neighbours / (4.0 * math.pi * n)) ** (1.0 / 3.0)


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median seconds of each function, warm, timed round-robin.

    Between calls of *different* functions the loop pauses ``SETTLE_S`` so that one
    library's idle threads (OpenMP spins after each torch op) do not slow the other.
    """
    for f in fns.values():
        f()
    settle = SETTLE_S if len(fns) > 1 else 0.0
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def small_cloud_rows(n: int, repeats: int) -> List[dict]:
    torch.manual_seed(0)
    x = torch.rand(n, 3)
    xn = x.numpy()
    rows = []

    t = interleaved(
        {
            "geo3d": lambda: knn_graph(x, 16),
            "scipy": lambda: cKDTree(xn).query(xn, k=17, workers=-1),
        },
        repeats,
    )
    rows.append(dict(op="knn_graph k=16", n=n, geo3d_ms=t["geo3d"] * 1e3,
                     baseline="scipy cKDTree build+query(k=17)", baseline_ms=t["scipy"] * 1e3,
                     ratio=t["geo3d"] / t["scipy"], target="<= 1.2",
                     ok=t["geo3d"] / t["scipy"] <= 1.2))

    m = n // 4
    t = interleaved(
        {
            "geo3d": lambda: fps(x, ratio=m / n, random_start=False),
            "torch": lambda: torch_fps_reference(x, m),
        },
        max(3, repeats // 3),
    )
    speedup = t["torch"] / t["geo3d"]
    rows.append(dict(op=f"fps {m} of {n}", n=n, geo3d_ms=t["geo3d"] * 1e3,
                     baseline="torch FPS loop", baseline_ms=t["torch"] * 1e3,
                     ratio=t["geo3d"] / t["torch"], target="speed-up >= 10",
                     ok=speedup >= 10, speedup=speedup))

    r = radius_for(n, 32)
    t = interleaved(
        {
            "geo3d": lambda: radius_graph(x, r),
            "scipy": lambda: cKDTree(xn).query_ball_point(xn, r, workers=-1),
        },
        repeats,
    )
    rows.append(dict(op=f"radius_graph r={r:.4f} (~32 nbrs)", n=n, geo3d_ms=t["geo3d"] * 1e3,
                     baseline="scipy query_ball_point (unsorted lists)",
                     baseline_ms=t["scipy"] * 1e3, ratio=t["geo3d"] / t["scipy"],
                     target="report", ok=None))

    y = torch.rand(n // 4, 3)
    yn = y.numpy()
    t = interleaved(
        {
            "geo3d": lambda: knn(x, y, 16),
            "scipy": lambda: cKDTree(xn).query(yn, k=16, workers=-1),
        },
        repeats,
    )
    rows.append(dict(op=f"knn k=16, {n // 4} queries", n=n, geo3d_ms=t["geo3d"] * 1e3,
                     baseline="scipy cKDTree build+query(k=16)", baseline_ms=t["scipy"] * 1e3,
                     ratio=t["geo3d"] / t["scipy"], target="report", ok=None))

    batch = torch.arange(n) // (n // 8)
    t = interleaved({"geo3d": lambda: voxel_grid(x, 0.05, batch)}, repeats)
    rows.append(dict(op="voxel_grid size=0.05, 8 items", n=n, geo3d_ms=t["geo3d"] * 1e3,
                     baseline="", baseline_ms=None, ratio=None, target="report", ok=None))
    return rows


def _device_calls(x: torch.Tensor) -> Dict[str, Callable[[], object]]:
    """The calls of :func:`small_cloud_rows` on ``x``'s device, keyed by their row's op."""
    n, m = x.shape[0], x.shape[0] // 4
    g = torch.Generator().manual_seed(1)
    y = torch.rand(n // 4, 3, generator=g).to(x.device)
    batch = (torch.arange(n) // (n // 8)).to(x.device)
    r32 = radius_for(n, 32)
    return {
        "knn_graph k=16": lambda: knn_graph(x, 16),
        f"fps {m} of {n}": lambda: fps(x, ratio=m / n, random_start=False),
        f"radius_graph r={r32:.4f} (~32 nbrs)": lambda: radius_graph(x, r32),
        f"knn k=16, {n // 4} queries": lambda: knn(x, y, 16),
        "voxel_grid size=0.05, 8 items": lambda: voxel_grid(x, 0.05, batch),
        "torch FPS loop": lambda: torch_fps_reference(x, m),
    }


def device_rows(small: List[dict], n: int, repeats: int, device: str) -> List[dict]:
    """geo3d's operators (and the torch FPS loop) on ``device``, median of warm calls with
    the device synchronized around each, beside the CPU times of ``small``."""
    torch.manual_seed(0)
    x = torch.rand(n, 3).to(device)
    cpu_ms = {r["op"]: r["geo3d_ms"] for r in small}
    cpu_ms["torch FPS loop"] = next((r["baseline_ms"] for r in small if r["op"].startswith("fps")),
                                    None)
    rows = []
    for op, fn in _device_calls(x).items():
        reps = max(3, repeats // 3) if "fps" in op.lower() else repeats
        fn()
        synchronize(device)
        times = []
        for _ in range(reps):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        cpu = cpu_ms.get(op)
        rows.append(dict(op=op, n=n, device=device, device_ms=ms, cpu_ms=cpu,
                         speedup=cpu / ms if cpu else None, repeats=reps))
    return rows


LARGE_OPS = ("knn_graph", "scipy_knn", "radius_graph", "fps", "voxel_grid")


def run_large(op: str, n: int, repeats: int) -> dict:
    """Time and peak-memory increase of one operator on ``n`` points (child process)."""
    torch.manual_seed(0)
    x = torch.rand(n, 3)
    r = radius_for(n, 16)
    calls = {
        "knn_graph": (lambda p: knn_graph(p, 16), "k=16"),
        "scipy_knn": (lambda p: cKDTree(p.numpy()).query(p.numpy(), k=17, workers=-1),
                      "reference: plain cKDTree build+query(k=17)"),
        "radius_graph": (lambda p: radius_graph(p, radius_for(len(p), 16)), f"r={r:.4f}"),
        "fps": (lambda p: fps(p, ratio=0.05, random_start=False), "ratio=0.05"),
        "voxel_grid": (lambda p: voxel_grid(p, 0.01), "size=0.01"),
    }
    fn, params = calls[op]
    fn(x[:2000])  # warm-up (imports, lazy initialisation)
    time.sleep(SETTLE_S)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(x)
        times.append(time.perf_counter() - t0)
        del out
        time.sleep(SETTLE_S)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return dict(op=op, params=params, n=n, seconds=statistics.median(times),
                peak_mib=peak_kib / 1024.0, repeats=repeats)


def large_rows(n: int, repeats: int) -> List[dict]:
    rows = []
    for op in LARGE_OPS:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", op,
               "--large-n", str(n), "--large-repeats", str(repeats)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            rows.append(dict(op=op, n=n, error=res.stderr.strip().splitlines()[-1:]))
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return rows


def fmt(v, digits=1):
    return "" if v is None else f"{v:.{digits}f}"


def markdown(result: dict) -> str:
    lines = [
        "# geo3d neighbour operators",
        "",
        f"{result['machine']['cores']} cores, torch {result['machine']['torch']}, "
        f"scipy {result['machine']['scipy']}; median of warm repeats.",
        "",
        "| operator | n | geo3d ms | baseline | baseline ms | ratio | target | ok |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in result["small"]:
        ratio = f"{r['speedup']:.1f}x faster" if "speedup" in r else fmt(r["ratio"], 2)
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        lines.append(f"| {r['op']} | {r['n']} | {fmt(r['geo3d_ms'])} | {r['baseline']} | "
                     f"{fmt(r['baseline_ms'])} | {ratio} | {r['target']} | {ok} |")
    lines += ["", "Large clouds (fresh process each; peak memory = ru_maxrss increase):", "",
              "| operator | params | n | seconds | peak MiB |",
              "| --- | --- | ---: | ---: | ---: |"]
    for r in result["large"]:
        if "error" in r:
            lines.append(f"| {r['op']} | | {r['n']} | failed: {r['error']} | |")
        else:
            lines.append(f"| {r['op']} | {r['params']} | {r['n']} | {r['seconds']:.3f} | "
                         f"{r['peak_mib']:.0f} |")
    if result.get("device_rows"):
        lines += ["", f"On {result['device']} (torch backend, synchronized; CPU: the table above):",
                  "", "| operator | n | device ms | CPU ms | speed-up |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for r in result["device_rows"]:
            lines.append(f"| {r['op']} | {r['n']} | {fmt(r['device_ms'], 2)} | {fmt(r['cpu_ms'])} "
                         f"| {fmt(r['speedup'], 1)} |")
    return "\n".join(lines) + "\n"


def result_rows(small: List[dict]) -> List[dict]:
    """The suite's rows (geo3d.bench.ResultRow): each op, geo3d and its baseline, in ms."""
    from geo3d.bench.results import ResultRow

    rows = []
    for r in small:
        task = f"{r['op']}, {r['n']:,} points"
        for model, ms in (("geo3d", r["geo3d_ms"]), (r.get("baseline"), r.get("baseline_ms"))):
            if not model or ms is None:  # an op reported without a baseline
                continue
            rows.append(ResultRow(benchmark="neighbors", task=task, model=model, metric="ms",
                                  value=ms, higher_is_better=False, latency_ms=ms).to_dict())
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/bench/neighbors", help="output folder")
    ap.add_argument("--quick", action="store_true", help="few repeats, 2e5-point large run")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of the 16k timings")
    ap.add_argument("--n", type=int, default=16384, help="points of the main comparisons")
    ap.add_argument("--large-n", type=int, default=None, help="points of the large runs")
    ap.add_argument("--large-repeats", type=int, default=None)
    ap.add_argument("--child", choices=LARGE_OPS, help=argparse.SUPPRESS)
    add_device_arg(ap, note="cuda: geo3d's operators at --n points are also timed on the GPU; "
                            "the library comparisons and the large runs stay on the CPU")
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    large_n = args.large_n or (200_000 if args.quick else 1_000_000)
    large_repeats = args.large_repeats or (1 if args.quick else 3)
    if args.child:
        print(json.dumps(run_large(args.child, large_n, large_repeats)))
        return 0
    repeats = args.repeats or (5 if args.quick else 21)
    result = {
        "device": device,
        "machine": dict(cores=os.cpu_count(), torch=torch.__version__, scipy=scipy.__version__,
                        numpy=np.__version__, python=platform.python_version(),
                        torch_threads=torch.get_num_threads()),
        "settings": dict(repeats=repeats, large_n=large_n, large_repeats=large_repeats,
                         settle_s=SETTLE_S),
        "small": small_cloud_rows(args.n, repeats),
        "large": large_rows(large_n, large_repeats),
    }
    result["device_rows"] = (device_rows(result["small"], args.n, repeats, device)
                             if device != "cpu" else [])
    result["results"] = result_rows(result["small"])
    md = markdown(result)
    print(md)
    from geo3d.io.atomic import atomic_write_bytes  # heavy import (open3d): only now

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "neighbors.json", json.dumps(result, indent=2).encode())
    atomic_write_bytes(out / "neighbors.md", md.encode())
    print(f"wrote {out / 'neighbors.json'} and {out / 'neighbors.md'}")
    return 0 if all(r["ok"] is not False for r in result["small"]) else 1


if __name__ == "__main__":
    sys.exit(main())
