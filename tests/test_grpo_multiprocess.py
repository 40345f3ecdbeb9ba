"""Resampling under two processes (torchrun, gloo on CPU): the decision comes from gathered rewards, so the
rank whose group has signal still joins every regeneration round and nothing deadlocks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os, sys, zlib
from pathlib import Path
from differad_cli.train.configs import build_configs
from differad_cli.train.grpo_trainer import DifferadGRPOTrainer
from differad_cli.train.grpo import rl_dataset
from differad_cli.models.load import resize_params
from differad_cli.core.records import read_pairs
from differad_cli.train.model import left_padding, suppress_vision_tokens
from differad_cli.train.model import load_trainable

model_dir, pairs, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rank = int(os.environ["RANK"])

def reward(completions, **_):
    # rank 0's group never has signal; rank 1's always has
    if rank == 0:
        return [0.0] * len(completions)
    return [zlib.crc32(str(c).encode()) / 2**32 for c in completions]

cli = {"per_device_train_batch_size": 4, "num_generations": 4, "gradient_accumulation_steps": 1,
       "max_completion_length": 8, "precision": "fp32", "gradient_checkpointing": False, "logging_steps": 1,
       "save_strategy": "no", "seed": 0, "max_steps": 2, "max_resample": 2}
cfg, args = build_configs("rl", recipe=None, cli=cli, output_dir=str(out))
model, proc = load_trainable(model_dir, cfg, args)
suppress_vision_tokens(args, model)
left_padding(proc)
ds = rl_dataset(read_pairs(pairs), cfg, "qwen2_vl", resize_params(proc), args.seed)
trainer = DifferadGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                              processing_class=proc, max_resample=cfg.max_resample)
trainer.train()
if trainer.is_world_process_zero():
    logs = [h for h in trainer.state.log_history if "loss" in h]
    (out / "logs.json").write_text(json.dumps(logs))
import torch.distributed as dist
if dist.is_initialized():  # an orderly gloo teardown: without it a rank can abort at interpreter exit
    dist.barrier()
    dist.destroy_process_group()
# Skip interpreter teardown: gloo's helper threads occasionally abort there on CPU ("terminate called
# without an active exception") after all the work is done, which is not what this test is about.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def test_two_ranks_agree_on_resampling(synth_pairs: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "DIFFERAD_LAUNCHED": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(script), str(tiny_model_dir), str(synth_pairs), str(out)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = json.loads((out / "logs.json").read_text())
    assert len(logs) == 2
    for log in logs:
        assert log["resample/degenerate_before"] == 0.5  # one of the two groups (rank 0's)
        assert log["resample/degenerate_after"] == 0.5  # it stays degenerate ...
        assert log["resample/rounds"] == 2.0  # ... so both ranks ran both rounds together
