"""Run by torchrun in test_distributed.py: train, then save this rank's weights, EMA weights and
Adam states for comparison. `OUT STEPS [resume | poison-rank1]`: poison-rank1 makes one of rank 1's EMA
weights NaN before training (the other rank's stay finite), and each rank that stops for it writes the
error to OUT/rankN.error, then waits for the other at a barrier (a rank that went on instead would hang
there, and the test time out)."""

import os
import sys
from pathlib import Path

import torch

from ganserve.training.loop import Trainer, TrainingDiverged
from ganserve.training.options import TrainOptions

out, steps, mode = sys.argv[1], int(sys.argv[2]), (sys.argv[3:] or [None])[0]
# 255 images: shares of 128 and 127 would give the ranks 8 and 7 batches an epoch (equal shares give 7 each).
# Evaluations at steps 3 and 9 fall between checkpoints (every 2): only rank 0 evaluates, every rank saves.
opts = TrainOptions(preset="upconv32", data="digits", out=out, steps=steps, batch_size=16, width=8, data_limit=255,
                    checkpoint_every=2, eval_every=3, eval_samples=64, log_every=1, recalibration_batches=2,
                    device="cpu")
trainer = Trainer(opts, resume=mode == "resume", log=lambda *_: None)
if mode == "poison-rank1" and os.environ["RANK"] == "1":
    next(trainer.ema.parameters()).data[0] = float("nan")
try:
    trainer.fit()
except TrainingDiverged as e:
    Path(out, f"rank{os.environ['RANK']}.error").write_text(str(e))
    torch.distributed.barrier()
    sys.exit(3)
adam = {f"{name}.{i}.{k}": v for name, opt in (("opt_G", trainer.opt_G), ("opt_D", trainer.opt_D))
        for i, state in opt.state_dict()["state"].items() for k, v in state.items()}
torch.save({"G": trainer.G.state_dict(), "D": trainer.D.state_dict(), "EMA": trainer.ema.state_dict(), "adam": adam},
           f"{out}/rank{os.environ['RANK']}.pt")
