"""DDP through torchrun (gloo, 2 CPU processes): both ranks end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geo3d.tasks import evaluate
from geo3d.tasks.distributed import DistInfo, init_distributed
from tests.tasks._tiny import TinySeg, seg_dataset

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")

SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
import torch
from geo3d.tasks import TrainConfig, train
from tests.tasks._tiny import TinySeg, seg_dataset

rank = int(os.environ["RANK"])
torch.manual_seed(rank)          # different initial weights: DDP must broadcast rank 0's
model = TinySeg()
out = {out!r}
result = train(model, seg_dataset(12), TrainConfig(
    epochs=2, batch_size=2, lr=1e-2, seed=0, device="cpu", progress=False, log_every=1,
    out_dir=os.path.join(out, f"run{{rank}}"), tensorboard=False), val_dataset=seg_dataset(5, seed=1))
torch.save(model.state_dict(), os.path.join(out, f"rank{{rank}}.pt"))
final = {{k: v for k, v in result.final.items() if k in ("OA", "mIoU", "loss")}}
json.dump({{"final": final, "steps": result.steps}}, open(os.path.join(out, f"rank{{rank}}.json"), "w"))
"""


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun not installed in the venv")
def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    torch.manual_seed(0)
    assert not all(torch.equal(w0[k], v) for k, v in TinySeg().state_dict().items()), "it trained"
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # 12 samples on 2 ranks, batch 2 per rank: 3 steps per epoch
    assert r0 == r1 and r0["steps"] == 6
    # the sharded validation, summed over ranks, equals a single-process evaluation
    model = TinySeg()
    model.load_state_dict(w0)
    single = evaluate(model, seg_dataset(5, seed=1))
    assert r0["final"]["OA"] == single["OA"]
    assert r0["final"]["mIoU"] == pytest.approx(single["mIoU"])
    assert r0["final"]["loss"] == pytest.approx(single["loss"], rel=1e-5)
    # only rank 0 writes files
    assert (tmp_path / "run0" / "last.pt").is_file() and not (tmp_path / "run1").exists()


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo() and info.is_main and not info.enabled
