"""Dense correspondence on posed humanoid meshes: GEM-CNN against an isotropic GCN.

``gem_corr`` (GEM-CNN, de Haan et al. ICLR 2021: gauge-equivariant kernels, parallel
transport, a U-Net of GEM ResNet blocks) and a PyG ``GCNConv`` baseline on the same mesh
graph (isotropic: it cannot tell directions apart, e.g. the left arm from the right one
on a mirror-symmetric body) are trained from scratch with ``geo3d.tasks.train`` on
``SyntheticMeshes`` (random poses, non-rigid noise, random scale and rigid motion; about
1,240 template vertices; inputs (``--features``): the heat kernel signature of
``geo3d.geometry.spectral.heat_kernel_signature`` by default, or the two curvature scalars
of ``geo3d.geometry.mesh.curvature_features``), for a wall-time budget each (``--minutes``,
``--baseline-minutes``), then tested on:

* ``test``: meshes with the template's connectivity;
* ``test_retriangulated``: the same kind of meshes re-triangulated (Open3D Loop subdivision,
  jitter, quadric decimation); labels are the nearest posed template vertex, so "exact"
  means that vertex.

``--train-retriangulated F`` (default 0.8) re-triangulates a fraction ``F`` of the training
meshes (other poses than the plain ones), so that connectivity is no cue during training.
Many of them are needed: with 80 re-triangulated training meshes GEM learned each one by
heart (99.9% exact on them) and scored 81% within 10 cm on new ones; with 640, 99.2%.
``left/right flips`` counts vertices put on the mirror image of their true place.

Reported: exact correspondence accuracy; accuracy within a geodesic radius ``r`` of the
true vertex (geodesics on the rest template, Dijkstra on its edge graph, metres; the
body is 1.8 m tall); part mIoU (10 parts, the part of the predicted vertex); params, MACs
(``geo3d.efficiency.profile``: message passing included; GemConv counted on its
message-passing path, see ``_unfused_macs``), CPU latency on one mesh, peak memory of one
inference (gem_corr; in a fresh process) and size. Target (issue 4): >= 99% exact correspondence on the test split.

Also timed: :func:`geo3d.geometry.mesh.mesh_geometry` on a 163,842-vertex icosphere.

Training and the correspondence metrics run on ``--device`` (default cpu); costs on the
CPU. The picture ``mesh_prediction.png`` shows a test mesh coloured by its ground-truth
correspondence (each template vertex's colour: its position in the template's bounding
box) beside the correspondence the first model (``gem_corr``) predicts, and the
prediction on a re-triangulated test mesh.

Writes ``mesh.json``, ``mesh.md`` and ``gem_corr.pt`` (a checkpoint for
``geo3d.tasks.checkpoint.model_from_checkpoint``) atomically to ``--out`` and prints the
tables.
Run: ``python benchmarks/mesh.py [--quick] [--minutes M] [--threads T] [--geometry-only]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (add_device_arg, fmt, machine_info, measure, resolve_device,  # noqa: E402
                      synchronize, write_outputs)
from _pictures import add_picture_arg, panel, picture, side_by_side  # noqa: E402
from _rows import cost_fields, make_row  # noqa: E402

RADII = (0.02, 0.05, 0.10)
TARGET = 0.99


class GCNBaseline(nn.Module):
    """Isotropic baseline: ``depth`` PyG ``GCNConv`` layers (BatchNorm, ReLU, residual).

    Same inputs (``data.x``) and the same mesh graph (the unique
    edges of ``data.face``) as GEM-CNN; per-vertex logits, cross-entropy on ``data.y``.
    """

    task = "segmentation"

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, depth: int = 8,
                 head: int = 128) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.inp = nn.Linear(in_channels, width)
        self.convs = nn.ModuleList(GCNConv(width, width) for _ in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(depth))
        self.head = nn.Sequential(nn.Linear(width, head), nn.BatchNorm1d(head), nn.ReLU(),
                                  nn.Linear(head, num_classes))

    def forward(self, data) -> Tensor:
        from geo3d.geometry.mesh import mesh_edges

        edge_index = mesh_edges(data.face, data.pos.shape[0])
        h = self.inp(data.x)
        for conv, norm in zip(self.convs, self.norms):
            h = h + torch.relu(norm(conv(h, edge_index)))
        return self.head(h)

    def loss(self, logits: Tensor, data) -> Tensor:
        return nn.functional.cross_entropy(logits, data.y, ignore_index=-1)


def geodesic_matrix() -> np.ndarray:
    """All-pairs geodesic distances (m) on the rest template's edge graph, ``[V, V]``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    from geo3d.sim.humanoid import humanoid_template

    t = humanoid_template()
    e = np.concatenate([t.faces[:, [0, 1]], t.faces[:, [1, 2]], t.faces[:, [2, 0]]])
    w = np.linalg.norm(t.vertices[e[:, 0]] - t.vertices[e[:, 1]], axis=1)
    n = len(t.vertices)
    return dijkstra(coo_matrix((w, (e[:, 0], e[:, 1])), (n, n)).tocsr(), directed=False)


def mirror_map() -> np.ndarray:
    """The template vertex nearest to each template vertex's mirror image (``y -> -y``)."""
    from scipy.spatial import cKDTree

    from geo3d.sim.humanoid import humanoid_template

    v = humanoid_template().vertices
    return cKDTree(v).query(v * [1.0, -1.0, 1.0])[1]


@torch.no_grad()
def correspondence_metrics(model: nn.Module, dataset: Sequence, geodesic: np.ndarray,
                           part_of: np.ndarray, num_parts: int, device: str = "cpu",
                           mirror: np.ndarray | None = None) -> dict:
    """Exact and geodesic-radius accuracy, mean geodesic error and part mIoU (the model
    runs where its parameters are, on ``device``). With ``mirror`` (:func:`mirror_map`)
    also ``mirror_flips``: the fraction of vertices predicted more than 10 cm from the
    truth but within 10 cm of its mirror image, i.e. left and right confused."""
    model.eval()
    pred, true = [], []
    for data in dataset:
        pred.append(model(data.to(device)).argmax(1).cpu().numpy())
        true.append(data.corr.numpy())
    pred, true = np.concatenate(pred), np.concatenate(true)
    err = geodesic[pred, true]
    out = {"exact": float((pred == true).mean()), "mean_geodesic_error_m": float(err.mean())}
    for r in RADII:
        out[f"within_{r:g}m"] = float((err <= r).mean())
    pp, pt = part_of[pred], part_of[true]
    ious = []
    for k in range(num_parts):
        union = ((pp == k) | (pt == k)).sum()
        if union:
            ious.append(((pp == k) & (pt == k)).sum() / union)
    out["part_mIoU"] = float(np.mean(ious))
    if mirror is not None:
        flipped = (err > 0.1) & (geodesic[pred, mirror[true]] <= 0.1)
        out["mirror_flips"] = float(flipped.mean())
    out["num_vertices"] = int(len(true))
    return out


def _unfused_macs(model: nn.Module, example) -> dict:
    """MACs of ``model`` with every ``GemConv`` on its PyG message-passing path.

    The profiler counts the fused path's sparse CSR products as dense ``[F V, V]``
    matrices; the message-passing path computes the same function with per-edge work that
    it counts correctly (gathers/scatters included).
    """
    import copy

    from geo3d.models.gem import GemConv

    unfused = copy.deepcopy(model)
    for m in unfused.modules():
        if isinstance(m, GemConv):
            m.fused = False
    from _measure import count_macs

    out = count_macs(unfused.eval(), example)
    out["macs_note"] = "GemConv counted on its message-passing path (fused path: same function)"
    return out


def geometry_timing(subdivisions: int = 7, repeats: int = 3) -> dict:
    """Seconds of ``mesh_geometry`` on an icosphere (subdivision 7: 163,842 vertices)."""
    import trimesh

    from geo3d.geometry.mesh import mesh_geometry

    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    pos = torch.tensor(m.vertices, dtype=torch.float32)
    face = torch.tensor(m.faces.T.copy())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mesh_geometry(pos, face)
        times.append(time.perf_counter() - t0)
    return {"vertices": int(pos.shape[0]), "faces": int(face.shape[1]),
            "seconds_median": float(np.median(times)), "threads": torch.get_num_threads()}


def _fit(model: nn.Module, train_set: List, val_set: List, minutes: float, batch_size: int,
         lr: float, seed: int, device: str = "cpu") -> dict:
    """Train ``model`` on ``device`` for about ``minutes``; it stays on ``device``."""
    from geo3d.tasks import TrainConfig, train
    from torch_geometric.loader import DataLoader

    probe = next(iter(DataLoader(train_set[:batch_size], batch_size=batch_size))).to(device)
    model.to(device).train()
    times = []
    for _ in range(2):  # the faster of two forward + backward passes
        synchronize(device)
        t0 = time.perf_counter()
        model.loss(model(probe), probe).backward()
        model.zero_grad()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    step_s = min(times)
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    # round up: on a shared machine the budget (max_minutes) is what stops the run
    epochs = max(2, math.ceil(minutes * 60 / step_s / steps_per_epoch))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         max_minutes=minutes, progress=False, tensorboard=False,
                         eval_every=epochs, warmup_steps=min(50, epochs * steps_per_epoch // 20),
                         grad_clip=10.0, device=device, weight_decay=1e-4)
    t0 = time.perf_counter()
    result = train(model, train_set, config, val_dataset=val_set)
    return {"minutes": (time.perf_counter() - t0) / 60, "budget_minutes": minutes,
            "epochs": result.epochs, "planned_epochs": epochs, "steps": result.steps,
            "stopped": result.stopped, "batch_size": batch_size, "lr": lr, "device": device}


def prediction_picture(model: nn.Module, tests: Dict[str, List], template_pos: Tensor,
                       title: str) -> np.ndarray:
    """A test mesh coloured by true | predicted template vertex, and the prediction on a
    re-triangulated test mesh (CPU, eval mode)."""
    from geo3d.viewers import mesh

    model.eval()
    scenes, titles = [], []
    with torch.no_grad():
        data = tests["test"][0]
        scenes.append(mesh(data, "correspondence", correspondence=data.corr,
                           template_pos=template_pos))
        titles.append("ground-truth correspondence")
        scenes.append(mesh(data, "correspondence", correspondence=model(data).argmax(1),
                           template_pos=template_pos))
        titles.append(f"predicted: {title}")
        if tests.get("test_retriangulated"):
            data = tests["test_retriangulated"][0]
            scenes.append(mesh(data, "correspondence", correspondence=model(data).argmax(1),
                               template_pos=template_pos))
            titles.append("re-triangulated mesh, predicted")
    return side_by_side([panel(s, t, 340, 400, legend=False) for s, t in zip(scenes, titles)])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="output folder")
    ap.add_argument("--quick", action="store_true", help="small data, ~1 minute per model")
    ap.add_argument("--minutes", type=float, default=None, help="GEM training budget (default 20)")
    ap.add_argument("--baseline-minutes", type=float, default=None,
                    help="GCN training budget (default: --minutes / 2)")
    ap.add_argument("--train-size", type=int, default=None,
                    help="training meshes (default 800; 16 with --quick)")
    ap.add_argument("--test-size", type=int, default=None, help="test meshes per split (default 20)")
    ap.add_argument("--order", type=int, default=1, help="GEM irrep order N (default 1)")
    ap.add_argument("--width", type=int, default=16, help="GEM width (default 16)")
    ap.add_argument("--levels", type=int, default=4, help="GEM U-Net levels (default 4)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--train-retriangulated", type=float, default=None, metavar="F",
                    help="fraction of the training meshes re-triangulated (default 0.8; 0, "
                         "all with the template's connectivity, with --quick)")
    ap.add_argument("--features", default="hks", choices=["hks", "curvature"],
                    help="invariant vertex inputs (default hks: the heat kernel signature, "
                         "which survives re-triangulation; curvature: two one-ring scalars)")
    ap.add_argument("--neighbour-weights", default="uniform", choices=["uniform", "angle"],
                    help="GemConv neighbour weighting (default uniform: the paper's mean over "
                         "the one-ring; angle: each neighbour's angular sector)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["gem_corr", "gcn"], choices=["gem_corr", "gcn"])
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the peak-memory child process (measured for gem_corr only: the "
                         "GCN baseline is defined in this script and cannot be rebuilt there)")
    ap.add_argument("--repeats", type=int, default=None, help="timed latency repeats")
    ap.add_argument("--val-size", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--geometry-only", action="store_true",
                    help="only time the mesh geometry of a 163,842-vertex mesh")
    add_device_arg(ap)
    add_picture_arg(ap)
    args = ap.parse_args(argv)
    device = resolve_device(ap, args)
    if args.train_retriangulated is None:
        args.train_retriangulated = 0.0 if args.quick else 0.8
    if not 0.0 <= args.train_retriangulated <= 1.0:
        ap.error(f"--train-retriangulated must be in [0, 1], got {args.train_retriangulated}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.geometry_only:
        geo = geometry_timing()
        print(f"mesh_geometry: {geo['vertices']:,} vertices in {geo['seconds_median']:.2f} s "
              f"({geo['threads']} threads)")
        return {"geometry": geo}
    from geo3d.datasets import SyntheticMeshes
    from geo3d.models import create
    from geo3d.sim.humanoid import humanoid_template
    from geo3d.tasks import save_checkpoint, seed_everything

    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 20.0)
    base_minutes = args.baseline_minutes if args.baseline_minutes is not None else minutes / 2
    n_train = args.train_size or (16 if args.quick else 800)
    n_test = args.test_size or (4 if args.quick else 20)
    t0 = time.perf_counter()
    n_plain = n_train - round(args.train_retriangulated * n_train)
    opts = dict(seed=args.seed, features=args.features)
    plain = SyntheticMeshes("train", n_train, **opts)
    train_set = [plain[i] for i in range(n_plain)]
    if n_plain < n_train:  # the other poses re-triangulated: connectivity is not a cue
        retri = SyntheticMeshes("train", n_train, retriangulate=True, **opts)
        train_set += [retri[i] for i in range(n_plain, n_train)]
    val_set = list(SyntheticMeshes("val", args.val_size, **opts))
    tests = {"test": list(SyntheticMeshes("test", n_test, **opts)),
             "test_retriangulated": list(SyntheticMeshes("test", n_test, retriangulate=True, **opts))}
    in_channels = plain.num_features
    data_s = time.perf_counter() - t0
    template = humanoid_template()
    num_v = len(template.vertices)
    geodesic, mirror = geodesic_matrix(), mirror_map()
    print(f"data: {n_train} train meshes, {num_v} template vertices, built in {data_s:.0f} s", flush=True)

    results: Dict[str, dict] = {}
    shown = None  # (model, title) of the picture: the first model
    for name in args.models:
        seed_everything(args.seed)
        if name == "gem_corr":
            kwargs = dict(in_channels=in_channels, num_classes=num_v, width=args.width, order=args.order,
                          levels=args.levels, neighbour_weights=args.neighbour_weights)
            if args.tiny:
                kwargs.update(width=2, order=1, levels=2, head_channels=(8,))
            model, budget, spec = create("gem_corr", **kwargs), minutes, ("gem_corr", kwargs)
        else:
            kwargs = dict(in_channels=in_channels, num_classes=num_v)
            if args.tiny:
                kwargs.update(width=4, depth=2, head=8)
            model, budget, spec = GCNBaseline(**kwargs), base_minutes, None
        fit = _fit(model, train_set, val_set, budget, args.batch_size, args.lr, args.seed, device)
        metrics = {k: correspondence_metrics(model, ds, geodesic, template.part, 10, device, mirror)
                   for k, ds in tests.items()}
        model.cpu()  # the cost is CPU cost
        print(name, fit, metrics, flush=True)
        repeats = args.repeats or (3 if args.quick else 10)
        cost = measure(model.eval(), tests["test"][0], spec=spec, repeats=repeats,
                       memory=spec is not None and not args.no_memory)
        if name == "gem_corr":  # count MACs on the message-passing path (same function):
            cost.update(_unfused_macs(model, tests["test"][0]))  # sparse mm counts as dense
        results[name] = {"kwargs": kwargs, "train": fit, "metrics": metrics, "cost": cost}
        if spec is not None:  # registered: rebuild with geo3d.tasks.checkpoint.model_from_checkpoint
            save_checkpoint(Path(args.out) / f"{name}.pt", {
                "model_name": name, "model_kwargs": kwargs, "model": model.state_dict()})
        if shown is None:
            shown = (model, f"{name}, exact {100 * metrics['test']['exact']:.0f}%")

    geo = geometry_timing(subdivisions=4 if args.tiny else 7, repeats=1 if args.tiny else 3)
    written = None if shown is None else picture(
        args.out, "mesh_prediction.png",
        lambda: prediction_picture(shown[0], tests, torch.as_tensor(template.vertices), shown[1]),
        enabled=not args.no_pictures)
    out = {"machine": machine_info(), "device": device, "features": args.features, "train_size": n_train,
           "train_retriangulated": n_train - n_plain,
           "test_size": n_test, "geometry": geo, "template_vertices": num_v,
           "target_exact": TARGET, "models": results, "quick": args.quick,
           "pictures": [written] if written else []}
    out["results"] = result_rows(out)
    md = _markdown(out)
    print(md)
    write_outputs(args.out, "mesh", out, md)
    return out


def result_rows(out: dict) -> List[dict]:
    """Suite rows (:class:`geo3d.bench.results.ResultRow` dicts): exact correspondence
    accuracy and cost of every model, one task per test split."""
    rows = []
    for name, r in out["models"].items():
        for split, m in r["metrics"].items():
            task = ("mesh correspondence (re-triangulated)" if "retri" in split
                    else "mesh correspondence")
            rows.append(make_row(
                "mesh", task, name, "exact", m["exact"], **cost_fields(r["cost"]),
                metrics={k: v for k, v in m.items() if k != "exact"},
                notes=f"{out['train_size']} training meshes, {r['train']['minutes']:.1f} min"))
    return rows


def _markdown(out: dict) -> str:
    radii = " | ".join(f"<= {r * 100:g} cm" for r in RADII)
    lines = [f"# Dense correspondence on SyntheticMeshes ({out['template_vertices']} template "
             f"vertices, {out['train_size']} training meshes, "
             f"{out.get('train_retriangulated', 0)} of them re-triangulated; inputs: "
             f"{out.get('features', 'curvature')})", "",
             f"| model | test split | exact | {radii} | mean geodesic error cm | part mIoU "
             "| left/right flips |",
             "|---|---|---|" + "---|" * len(RADII) + "---|---|---|"]
    for name, r in out["models"].items():
        for split, m in r["metrics"].items():
            cells = " | ".join(fmt(m[f'within_{x:g}m'], 3) for x in RADII)
            lines.append(f"| {name} | {split} | {fmt(m['exact'], 3)} | {cells} | "
                         f"{fmt(m['mean_geodesic_error_m'], 2, 100)} | {fmt(m['part_mIoU'], 3)} | "
                         f"{fmt(m.get('mirror_flips'), 3)} |")
    lines += ["", "| model | params | MMACs | latency ms (1 mesh) | peak MiB | train min | steps |",
              "|---|---|---|---|---|---|---|"]
    for name, r in out["models"].items():
        c, t = r["cost"], r["train"]
        lines.append(f"| {name} | {c['params']:,} | {fmt(c['macs'], 1, 1e-6)} | "
                     f"{fmt(c['latency_ms'])} | {fmt(c['peak_memory_mib'])} | "
                     f"{fmt(t['minutes'])} | {t['steps']} |")
    gem = out["models"].get("gem_corr")
    if gem:
        exact = gem["metrics"]["test"]["exact"]
        met = "met" if exact >= out["target_exact"] else "NOT met"
        lines += ["", f"Target >= {out['target_exact']:.0%} exact correspondence on the test split: "
                      f"{met} ({exact:.1%}){' (--quick run)' if out['quick'] else ''}."]
    g = out["geometry"]
    lines += ["", f"Mesh geometry (normals, gauges, log map, transport) of a {g['vertices']:,}-vertex "
                  f"mesh: {g['seconds_median']:.2f} s ({g['threads']} threads)."]
    m = out["machine"]
    lines += ["", f"Machine: {m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
