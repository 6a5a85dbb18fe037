"""The DCGAN training loop: exact resume, EMA, evaluation, multi-process (torchrun) runs.

One step, with D(fake) computed once and used for both losses (as in PyTorch-GAN's loop, where the
G step and the D step see the same discriminator and the same fake batch):

    fake = G(z);  d_real = D(real);  d_fake = D(fake)
    loss_G = BCE(d_fake, 1)                         -> gradients for G only
    loss_D = BCE(d_real, 1 - smoothing) + BCE(d_fake, 0)  -> gradients for D only
    Adam steps; EMA of G's weights.

Everything random comes from three places that a checkpoint saves: a latent generator, the global
torch RNG (dropout) and the data order, which is a function of (seed, epoch) and the position in
it. So a run stopped at any checkpoint and resumed ends bit-identical to an uninterrupted one (on
the CPU, with the same number of threads).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganserve import __version__
from ganserve._files import write_bytes
from ganserve._system import keep_freed_memory
from ganserve.config import GeneratorConfig
from ganserve.errors import ModelFormatError, plural
from ganserve.model_io import load_model, save_model
from ganserve.presets import create_config
from ganserve.torch_model import build_generator, export_weights

from . import distributed
from .checkpoint import CheckpointError, RunLock, link, load_checkpoint, save_checkpoint
from .data import IMAGE_SUFFIXES, NAMED, is_cifar_folder, load_dataset
from .networks import build_discriminator, dcgan_init, recalibrate_batch_norm
from .options import TrainOptions


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the last checkpoint on disk is the last good state."""


class Trainer:
    """A training run. With `resume`, `opts` gives the run-control fields (out, steps, ...); the rest
    come from the checkpoint, and `explicit` options (default: all of `opts`) must agree with it."""

    def __init__(self, opts: TrainOptions, resume: bool = False, log: Callable[[str], None] = print,
                 explicit: dict[str, Any] | None = None) -> None:
        try:
            self._start(opts, resume, log, explicit)
        except BaseException:
            self.close()  # a run refused (or a setup that failed) leaves the folder to others at once
            raise

    def _start(self, opts: TrainOptions, resume: bool, log: Callable[[str], None],
               explicit: dict[str, Any] | None) -> None:
        self.started = time.perf_counter()  # this session's share of the run's wall time starts here
        self.run = Path(opts.out)
        saved = self._checkpoint_to_resume(resume)
        if saved is not None:  # run-control fields not given keep the checkpoint's (--steps above all)
            given = opts.to_dict() if explicit is None else {**explicit, "out": opts.out}
            opts = TrainOptions.resumed(saved["options"], given)
        _check_out_outside_data(self.run, opts.data)
        self.dist = distributed.setup(opts.device)
        self.log = log if self.dist.main else (lambda *_: None)
        self.opts = opts
        device = self.dist.device
        self.cuda = device.type == "cuda"
        if not self.cuda:
            keep_freed_memory()  # a step's activations are reused, not mapped afresh (bench_training.py --malloc)
        self.amp = opts.amp if opts.amp is not None else self.cuda
        # channels-last measured faster for these convs on the CPU as well (bench/bench_training.py)
        self.channels_last = opts.channels_last if opts.channels_last is not None else True
        if saved is not None:
            self._check_same_setup(saved)
        torch.manual_seed(opts.seed * 1000 + self.dist.rank)

        if opts.data not in NAMED and Path(opts.data).exists():  # resumable from any folder
            opts = self.opts = dataclasses.replace(opts, data=str(Path(opts.data).resolve()))
        largest = create_config(opts.preset, channels=opts.channels or 3, latent_dim=opts.latent_dim, width=opts.width)
        self._check_evaluation_fits(largest)  # before the data is read: the channels are at most 3
        data = load_dataset(opts.data, limit=opts.data_limit, size=largest.output_shape[1:])
        channels = opts.channels or data.images.shape[-1]
        self.config = create_config(opts.preset, channels=channels, latent_dim=opts.latent_dim, width=opts.width)
        if saved is not None:
            self._check_architecture(GeneratorConfig.from_dict(saved["config"]), data.source)
        self.images = data.to_tensor(self.config.output_shape)
        if len(self.images) < opts.batch_size * self.dist.world:
            raise ValueError(f"{opts.data}: {len(self.images)} images, fewer than one batch "
                             f"({opts.batch_size} x {self.dist.world} processes)")
        self.images = self.images.to(device)
        self.data_source, self.skipped = data.source, data.skipped
        # what the data order indexes: a resumed run must see the same images
        self.data_sha256 = hashlib.sha256(memoryview(np.ascontiguousarray(data.images)).cast("B")).hexdigest()
        self._build_models()
        self.step, self.epoch, self.position = 0, 0, 0
        self.noise = torch.Generator(device).manual_seed(opts.seed * 1000 + 17 + self.dist.rank)
        self.history: list[dict[str, Any]] = []
        self.best_fd = math.inf
        self.train_time = 0.0  # seconds in training steps only, over every session
        # the run's wall time in earlier sessions (up to the checkpoint resumed); None: not known
        self.wall_time_before: float | None = 0.0
        self.command, self.hardware = _command_line(), _hardware(device)
        if saved is not None:
            self._restore(saved)
        elif self.dist.main:
            self.run.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.run)
            (self.run / "metrics.jsonl").write_text("")
        self._evaluator = None

    _lock: RunLock | None = None  # rank 0's hold on the run folder, from the start to the end of fit()

    def close(self) -> None:
        """Let go of the run folder (fit() does when it ends): another process may then train in it."""
        if self._lock is not None:
            self._lock.release()

    # --- setup

    def _checkpoint_to_resume(self, resume: bool) -> dict[str, Any] | None:
        last = self.run / "last.pt"
        if resume:
            if not last.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint at {last}")
            if _main_process():  # (torchrun's other ranks write nothing)
                self._lock = RunLock(self.run)  # before anything in the folder changes
                for stale in [*self.run.glob(".*.tmp"), *self.run.glob("checkpoints/.*.tmp")]:
                    stale.unlink()  # a save cut short by a kill (last.pt is always whole)
            return load_checkpoint(last)
        if last.exists():
            raise FileExistsError(f"{self.run} already holds a run ({last}); pass --resume to continue it "
                                  f"or choose another --out")
        return None

    def _check_architecture(self, saved: GeneratorConfig, data_source: str) -> None:
        if saved == self.config:
            return
        channels, then = self.config.output_shape[0], saved.output_shape[0]
        if self.opts.channels is None and channels != then:  # the data's channels, not an option, differ
            raise ValueError(f"--resume: {data_source} holds {channels}-channel images; the run in {self.run} was "
                             f"trained on {then}-channel images (resume it on its own data)"
                             f"{_read_otherwise(data_source)}")
        raise ValueError(f"--resume: {self.run / 'last.pt'} holds a different architecture than "
                         f"--preset {self.opts.preset} builds (check --channels, --latent-dim, --width)")

    def _check_evaluation_fits(self, config: GeneratorConfig) -> None:
        """Refuse an --eval-samples this machine's memory cannot hold: now, not at the first evaluation."""
        from ganserve._system import total_memory

        from .evaluate import evaluation_bytes

        need, have = evaluation_bytes(self.opts.eval_samples, config), total_memory()
        if have is not None and need > have:
            raise ValueError(f"--eval-samples {self.opts.eval_samples:,} needs about {need / 2**30:,.1f} GiB per "
                             f"evaluation, more than this machine's {have / 2**30:,.1f} GiB of memory; use fewer")

    def _build_models(self) -> None:
        opts, device = self.opts, self.dist.device
        G, D = build_generator(self.config), build_discriminator(self.config)
        dcgan_init(G)
        dcgan_init(D)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G, self.D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
        self.ema = copy.deepcopy(self.G).requires_grad_(False) if opts.ema_decay > 0 else None
        if self.dist.enabled:
            ids = [device.index] if self.cuda else None
            self.G_train = nn.parallel.DistributedDataParallel(self.G, device_ids=ids)
            self.D_train = nn.parallel.DistributedDataParallel(self.D, device_ids=ids)
            if self.ema is not None:  # DDP gave every rank rank 0's initial G: so must the EMA start from it
                self.ema.load_state_dict(self.G.state_dict())
        else:
            self.G_train, self.D_train = self.G, self.D
        adam = dict(betas=(opts.beta1, opts.beta2), fused=True)  # fused on the CPU too: torch >= 2.4
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=opts.lr_g, **adam)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=opts.lr_d, **adam)

    # --- state

    def state(self) -> dict[str, Any]:
        """The checkpoint: `summary()` with the weights, optimizer and RNG states (every rank: a collective)."""
        return {
            **self.summary(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "EMA": (self.ema or self.G).state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng": distributed.gather_states(self.dist, self._rng_state()),
        }

    def summary(self) -> dict[str, Any]:
        """The checkpoint's facts about the run, without its tensors: what `training_metadata` reads."""
        return {
            "step": self.step,
            "config": self.config.to_dict(),
            "options": self.opts.to_dict(),
            "data": {"epoch": self.epoch, "position": self.position, "images": len(self.images),
                     "sha256": self.data_sha256, "source": self.data_source},
            "history": self.history,
            "best_fd": self.best_fd,
            "elapsed_s": self.train_time,  # (the name checkpoints have always had for it)
            "wall_time_s": None if self.wall_time_before is None else
                           self.wall_time_before + time.perf_counter() - self.started,
            "command": self.command,  # the command that started the run
            "hardware": self.hardware,  # where it ran, each session's machine when they differed
            "world": self.dist.world,
            "device_type": self.dist.device.type,
            "threads": torch.get_num_threads(),  # CPU results depend on it: a resumed run is told
            "ganserve_version": __version__,
        }

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "noise": self.noise.get_state().cpu()}
        if self.cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        return state

    def _check_same_setup(self, s: dict[str, Any]) -> None:
        """What checkpoint `s` needs of this session's processes and device, before any data is read."""
        if s.get("world", 1) != self.dist.world:
            raise ValueError(f"--resume: the checkpoint was written by {s['world']} process(es), "
                             f"this run has {self.dist.world}")
        written_on = s.get("device_type", "cuda" if "cuda" in s["rng"][0] else "cpu")
        if written_on != self.dist.device.type:  # the latent generator's state belongs to one device type
            raise ValueError(f"--resume: the checkpoint was written on {written_on}, this run is on "
                             f"{self.dist.device.type}; resume it on a {written_on} device (--device {written_on})")
        for key, effective, default in (("amp", self.amp, self.cuda), ("channels_last", self.channels_last, True)):
            then = s["options"].get(key) if s["options"].get(key) is not None else default
            if then != effective:
                raise ValueError(f"--resume: the checkpoint was trained with {key}={then}, not {effective}; "
                                 f"a resumed run keeps its settings")
        threads = s.get("threads")
        if self.dist.device.type == "cpu" and threads is not None and threads != torch.get_num_threads():
            self.log(f"note: the checkpoint was written by a process with {plural(threads, 'thread')}, this one has "
                     f"{torch.get_num_threads()}: the run goes on, but CPU results depend on the thread count, so it "
                     f"will not be bit-identical to an uninterrupted run (OMP_NUM_THREADS={threads} would make it so)")

    def _restore(self, s: dict[str, Any]) -> None:
        saved_opts = s["options"]
        if "sha256" in s["data"]:
            if s["data"]["sha256"] != self.data_sha256:
                then, now = s["data"].get("images"), len(self.images)
                change = f"{then} images then, {now} now" if then != now else f"{now} images, other contents"
                raise ValueError(f"--resume: {self.data_source} is not the data the checkpoint was trained on "
                                 f"({change}){_read_otherwise(self.data_source)}")
        elif saved_opts.get("data") != self.opts.data:  # a checkpoint from before the hash: the name decides
            raise ValueError(f"--resume: the checkpoint was trained with data={saved_opts.get('data')!r}, "
                             f"not {self.opts.data!r}")
        try:
            self._load_state(s)
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise CheckpointError(f"{self.run / 'last.pt'}: its state does not fit this run "
                                  f"({' '.join(str(e).split())[:300]})") from None
        self.step, self.epoch, self.position = s["step"], s["data"]["epoch"], s["data"]["position"]
        self._saved_step = self.step
        self.history, self.best_fd, self.train_time = list(s["history"]), s["best_fd"], s["elapsed_s"]
        self.wall_time_before = s.get("wall_time_s")  # None in checkpoints older than it: stays unknown
        self.command = s.get("command", self.command)
        self.hardware = _hardware_since(s.get("hardware"), self.hardware)
        if self.dist.main:  # the log continues from the checkpoint: drop rows written after it
            rows = [json.dumps(r, sort_keys=True) for r in self.history]
            write_bytes(self.run / "metrics.jsonl", "".join(r + "\n" for r in rows).encode())  # whole, or as it was
            best, last = self.run / "best.pt", self.run / "last.pt"
            if any(r.get("best") and r["step"] == self.step for r in self.history) and not (
                    best.exists() and best.samefile(last)):
                link(last, best)  # a kill between writing last.pt and linking it as best.pt

    def _load_state(self, s: dict[str, Any]) -> None:
        """Weights, optimizer states and RNG states from checkpoint `s` (strict: every key must fit)."""
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        if self.ema is not None:
            self.ema.load_state_dict(s["EMA"])
        self.opt_G.load_state_dict(s["opt_G"])
        self.opt_D.load_state_dict(s["opt_D"])
        rng = s["rng"][self.dist.rank]  # one entry per process
        torch.set_rng_state(rng["torch"])
        self.noise.set_state(rng["noise"])
        if self.cuda and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.dist.device)

    # --- data

    def _order(self, epoch: int) -> torch.Tensor:
        """This rank's share of epoch `epoch`'s permutation (like DistributedSampler)."""
        gen = torch.Generator().manual_seed(self.opts.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.images), generator=gen)
        perm = perm[:len(perm) - len(perm) % self.dist.world]  # equal shares: ranks never drift apart
        return perm[self.dist.rank::self.dist.world].to(self.images.device)

    def _next_batch(self) -> torch.Tensor:
        bs = self.opts.batch_size
        if self._epoch_order is None or self._epoch_order[0] != self.epoch:
            self._epoch_order = (self.epoch, self._order(self.epoch))
        order = self._epoch_order[1]
        if self.position + bs > len(order):  # drop the ragged end, as drop_last does
            self.epoch, self.position = self.epoch + 1, 0
            return self._next_batch()
        batch = self.images[order[self.position:self.position + bs]]
        self.position += bs
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    _epoch_order: tuple[int, torch.Tensor] | None = None

    # --- one step

    def train_step(self, real: torch.Tensor) -> torch.Tensor:
        """One G and one D update; returns detached [loss_D, loss_G, D(real), D(fake)] means."""
        opts, bs = self.opts, real.shape[0]
        z = torch.randn(bs, self.config.latent_dim, generator=self.noise, device=real.device)
        with torch.autocast(real.device.type, dtype=torch.bfloat16, enabled=self.amp):
            fake = self.G_train(z)
            d_real = self.D_train(real).float()
            d_fake = self.D_train(fake).float()
        ones = torch.ones_like(d_fake)
        loss_g = F.binary_cross_entropy_with_logits(d_fake, ones)
        loss_d = (F.binary_cross_entropy_with_logits(d_real, ones * (1 - opts.label_smoothing))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self.opt_G.zero_grad(set_to_none=True)
        self.opt_D.zero_grad(set_to_none=True)
        loss_g.backward(inputs=list(self.G.parameters()), retain_graph=True)
        loss_d.backward(inputs=list(self.D.parameters()))
        self.opt_G.step()
        self.opt_D.step()
        if self.ema is not None:
            decay = min(opts.ema_decay, (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                torch._foreach_lerp_(list(self.ema.parameters()), list(self.G.parameters()), 1 - decay)
                for e, b in zip(self.ema.buffers(), self.G.buffers()):
                    e.copy_(b)
        return torch.stack([loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean()]).detach()

    # --- the run

    def _fit(self) -> Path:
        opts = self.opts
        if self.step >= opts.steps:
            where = f"at --steps {opts.steps}" if self.step == opts.steps else \
                f"past --steps {opts.steps}, at step {self.step}"
            self.log(f"{self.run}: already {where}; nothing to train")
            return self.finish(export=not self._model_is_current())
        self.log(f"training {opts.preset} ({self.config.num_params():,} parameters) on {self.data_source} "
                 f"({len(self.images)} images{f', {self.skipped} unreadable skipped' if self.skipped else ''}) "
                 f"for {plural(opts.steps, 'step')} of {opts.batch_size}"
                 f"{f' x {self.dist.world} processes' if self.dist.enabled else ''} on {self.dist.device}")
        for name, schedule in (("--lr-g-at", opts.lr_g_at), ("--lr-d-at", opts.lr_d_at)):
            late = [step for step, _ in schedule if step >= opts.steps]
            if late:
                self.log(f"note: {name} {', '.join(map(str, late))} is past --steps {opts.steps}: it takes effect "
                         f"only if the run is resumed with more steps")
        bar = _progress(opts.steps, self.step) if self.dist.main else None
        try:
            self._steps(bar)
        finally:  # an error line then starts on a line of its own
            if bar is not None:
                bar.close()
        return self.finish()

    def fit(self) -> Path:
        """Train to --steps (from the checkpoint when resumed), export RUN/model; returns its path."""
        try:
            return self._fit()
        finally:
            self.close()

    def _steps(self, bar) -> None:
        opts = self.opts
        sums, count, tick = torch.zeros(4, device=self.dist.device), 0, time.perf_counter()
        while self.step < opts.steps:
            self._set_learning_rates()
            sums += self.train_step(self._next_batch())
            count += 1
            self.step += 1
            due = [self.step % every == 0 for every in (opts.log_every, opts.eval_every, opts.checkpoint_every)]
            if any(due) or self.step == opts.steps:
                now = time.perf_counter()
                self.train_time += now - tick
                means = distributed.mean_across(self.dist, sums / count)
                row = self._log_row(means, count * opts.batch_size * self.dist.world / (now - tick))
                self._check_finite()  # before anything is evaluated or saved
                sums, count = torch.zeros_like(sums), 0
                if bar is not None:
                    bar.update(self.step - bar.n)
                    bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                                    img_s=f"{row['images_per_s']:.0f}")
                best = False
                if due[1] or self.step == opts.steps:
                    devices = [self.dist.device] if self.cuda else []
                    with torch.random.fork_rng(devices=devices):  # evaluation never moves training's RNG
                        self.evaluate(row)
                    best = distributed.broadcast_flag(self.dist, row.get("best", False))  # only rank 0 evaluates
                self._append(row)
                if due[2] or self.step == opts.steps or best:  # every rank: saving is a collective
                    self.save(best=best)
                tick = time.perf_counter()

    def _set_learning_rates(self) -> None:
        """The rates of --lr-g-at/--lr-d-at for this step (a function of the step: resume stays exact)."""
        for opt, rate in zip((self.opt_G, self.opt_D), self.opts.learning_rates(self.step)):
            for group in opt.param_groups:
                group["lr"] = rate

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error, with what can be done: a resumed run keeps its learning rates (and would replay the
        same steps), so a lower one means a new run."""
        last = self.run / "last.pt"
        retry = "a lower --lr-g/--lr-d or --label-smoothing"
        if self._saved_step is None:
            return TrainingDiverged(f"{what} by step {self.step}; no checkpoint was written before it "
                                    f"(run again with {retry})")
        return TrainingDiverged(f"{what} by step {self.step}; the last good checkpoint is {last} "
                                f"(step {self._saved_step}): to train on, start a new run (another --out) with "
                                f"{retry} (--resume keeps the learning rates and would diverge again); "
                                f"ganserve export --ckpt {last} keeps its model if it is worth keeping")

    _saved_step: int | None = None  # the step of the last checkpoint written or resumed from

    def _check_finite(self) -> None:
        """Refuse to go on (evaluate, save, export) with NaN/Inf weights or Adam moments: losses are
        computed before the update they drive, so an update can overflow with every logged loss still
        finite; and a huge gradient makes Adam's second moment Inf while the weights stay finite
        (that weight never moves again)."""
        nets = [self.G, self.D] + ([self.ema] if self.ema is not None else [])
        weights = [t for net in nets for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()]
        moments = [t for opt in (self.opt_G, self.opt_D) for state in opt.state.values()
                   for key, t in state.items() if key != "step"]  # the step count may live on the host
        finite = torch.ones(2, device=self.dist.device)
        for i, tensors in enumerate((weights, moments)):
            if tensors:
                finite[i] = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        # every rank decides alike (batch-norm statistics are each rank's own): none is left waiting
        weights_ok, moments_ok = (v >= 1 for v in distributed.mean_across(self.dist, finite).tolist())
        if not weights_ok:
            raise self._diverged("the weights became NaN/Inf")
        if not moments_ok:
            raise self._diverged("Adam's moment estimates became NaN/Inf (a gradient overflowed)")

    def _log_row(self, means: torch.Tensor, rate: float) -> dict[str, Any]:
        values = means.tolist()  # a host sync (with _check_finite), once per log interval only
        if not all(math.isfinite(v) for v in values):
            raise self._diverged("loss became NaN/Inf")
        keys = ("loss_d", "loss_g", "d_real", "d_fake")
        return {"step": self.step, **dict(zip(keys, values)), "images_per_s": rate}

    def _append(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self.dist.main:
            with open(self.run / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")

    def save(self, best: bool = False) -> None:
        state = self.state()  # every rank: the RNG states are gathered
        if self.dist.main:
            last = save_checkpoint(state, self.run, keep=self.opts.keep)
            if best:
                link(last, self.run / "best.pt")
        self._saved_step = self.step
        distributed.barrier(self.dist)

    # --- evaluation and export

    def inference_generator(self) -> nn.Module:
        """The generator users get: the EMA weights with BN statistics recomputed, in eval mode."""
        return inference_generator(self.ema or self.G, self.opts, self.dist.device)

    def evaluate(self, row: dict[str, Any]) -> None:
        """FD/CS of eval-mode samples (as users get them) and of train-mode samples; grid PNG; best.pt."""
        if not self.dist.main:
            return
        from .evaluate import evaluator_for, sample_images, save_grid

        evaluator = self._evaluator = self._evaluator or evaluator_for(self.images)
        net = self.inference_generator()
        n = self.opts.eval_samples
        samples = self.run / "samples"
        samples.mkdir(exist_ok=True)
        save_grid(net, samples / f"step-{self.step:08d}.png")  # first: train-mode sampling moves BN statistics
        eval_mode = evaluator.score(sample_images(net, n, seed=12345, train_mode=False))
        train_mode = evaluator.score(sample_images(net, n, seed=12345, train_mode=True,
                                                   batch_size=self.opts.batch_size))
        row.update(fd=eval_mode["fd"], cs=eval_mode["cs"], fd_train_mode=train_mode["fd"],
                   cs_train_mode=train_mode["cs"])
        self.log(f"step {self.step}: FD {eval_mode['fd']:.2f} (train-mode BN {train_mode['fd']:.2f}), "
                 f"CS {eval_mode['cs']:.2f}")
        if eval_mode["fd"] < self.best_fd:
            self.best_fd = eval_mode["fd"]
            row["best"] = True

    def finish(self, export: bool = True) -> Path:
        """Export the model directory (RUN/model), draw the curves."""
        for net in (self.G, self.D, self.ema):  # batch-norm statistics of every replica: rank 0's
            if net is not None:
                distributed.broadcast_buffers(self.dist, net)
        if self.dist.main and export:
            self.log(f"model written to {self.export(self.run / 'model')}")
            from .plots import plot_curves

            plot_curves(self.history, self.run / "curves.png")
        elif self.dist.main:
            self.log(f"{self.run / 'model'} is already this step's model")
        distributed.barrier(self.dist)
        distributed.teardown(self.dist)
        return self.run / "model"

    def export(self, out: Path) -> Path:
        net = self.inference_generator()
        return save_model(out, self.config, export_weights(net), training_metadata(self.summary()))

    def _model_is_current(self) -> bool:
        """Whether RUN/model was exported at this step (a run killed before its export has none)."""
        try:
            return load_model(self.run / "model").metadata.get("training", {}).get("steps") == self.step
        except (ModelFormatError, OSError):
            return False


def _main_process() -> bool:
    """Rank 0 of a torchrun launch, or a process on its own (before the process group is joined)."""
    return int(os.environ.get("RANK", "0")) == 0


def _read_otherwise(source: str) -> str:
    """Said when resumed data differs from the checkpoint's: image folders and .npz arrays may be the
    same files, read otherwise by a newer ganserve (mixed gray and colour, alpha, 16-bit; see data.py)."""
    path = Path(source)
    decoded = (path.is_dir() and not is_cifar_folder(path)) or path.suffix.lower() in {".npz", *IMAGE_SUFFIXES}
    if not decoded:
        return ""
    return ("; if these are the files it was trained on, this ganserve reads them differently than the one "
            "that started the run (mixed gray and colour, alpha or 16-bit images), and `ganserve export "
            "--ckpt` still exports the run")


def exported_weights(options: dict[str, Any], which: str = "ema") -> str:
    """The weights an export of `which` ("ema" or "raw") gets: a run with --ema-decay 0 has raw ones only."""
    return which if TrainOptions.from_saved(options).ema_decay > 0 else "raw"


def training_metadata(state: dict[str, Any], which: str = "ema") -> dict[str, Any]:
    """The metadata of a model exported from checkpoint `state` (`Trainer.state()` or its `summary()`):
    how the run was trained and its last evaluation at or before the checkpoint's step. The run's own
    export (RUN/model) and `ganserve export --ckpt` both write this, so they record the same facts.
    Facts that older checkpoints lack (command, hardware, wall time) are left out."""
    opts, step, world = TrainOptions.from_saved(state["options"]), state["step"], state.get("world", 1)
    # The loop evaluates the weights an EMA export gets (the EMA, or G in a run without one); raw
    # weights of a run with EMA were never scored, so their model records no metric.
    scored = exported_weights(state["options"], which) == exported_weights(state["options"])
    evaluations = [r for r in state["history"] if "fd" in r and r["step"] <= step] if scored else []
    metric = evaluations[-1] if evaluations else {}
    training = {
        "preset": opts.preset, "data": state["data"].get("source", opts.data), "images": state["data"].get("images"),
        "steps": step, "batch_size": opts.batch_size, "processes": world,
        "images_seen": step * opts.batch_size * world, "seed": opts.seed, "options": opts.to_dict(),
        "wall_time_s": _seconds(state.get("wall_time_s")), "train_time_s": _seconds(state["elapsed_s"]),
        "hardware": state.get("hardware"), "command": state.get("command"),
        "weights": exported_weights(state["options"], which),
        "batch_norm": f"recomputed from {opts.recalibration_batches} batches of fresh latents",
    }
    return {
        "training": {k: v for k, v in training.items() if v is not None},
        "metric": {k: metric[k] for k in ("step", "fd", "cs", "fd_train_mode", "cs_train_mode") if k in metric},
        "ganserve_version": __version__,
    }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def inference_generator(net: nn.Module, opts: TrainOptions, device: torch.device) -> nn.Module:
    """A float32 eval-mode copy of `net` with batch-norm statistics recomputed from fresh latents.

    Deterministic for a given run: the latents come from a CPU generator seeded by the run's seed
    (on any device), so `ganserve export` of a checkpoint, which runs on the CPU, gives the weights
    that the run itself exported (to the last bits for a CPU run; a GPU run's recomputed statistics
    may differ from the CPU's in rounding).
    """
    net = copy.deepcopy(net).float().to(device, memory_format=torch.contiguous_format)
    gen = torch.Generator().manual_seed(opts.seed + 99)
    with torch.autocast(device.type, enabled=False):
        return recalibrate_batch_norm(net, net.config.latent_dim, opts.recalibration_batches, opts.batch_size,
                                      gen, device)


def _check_out_outside_data(run: Path, data: str) -> None:
    """Refuse a run folder inside the --data folder: its sample grids would be read as training images."""
    if data in NAMED or not Path(data).is_dir():
        return
    if run.resolve().is_relative_to(Path(data).resolve()):
        raise ValueError(f"--out {run} is inside the --data folder {data}: the run's own images (sample grids, "
                         f"curves) would be read as training data; choose an --out outside it")


def _progress(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.machine()} CPU, {plural(torch.get_num_threads(), 'thread')}, torch {torch.__version__}"


def _hardware_since(before: str | None, now: str) -> str:
    """What a resumed run ran on: the earlier sessions' hardware, then this one's where it differs."""
    if before is None:  # a checkpoint older than the record: the earlier sessions' is not known
        return f"unknown; then {now}"
    return before if before == now or before.endswith(f"; then {now}") else f"{before}; then {now}"


def _command_line() -> str:
    program = Path(sys.argv[0]).name
    return " ".join(["ganserve" if program in ("ganserve", "__main__.py") else sys.argv[0], *sys.argv[1:]])


def train(opts: TrainOptions, resume: bool = False, log: Callable[[str], None] = print,
          explicit: dict[str, Any] | None = None) -> Path:
    """Run (or resume) a training run; returns the exported model directory."""
    return Trainer(opts, resume=resume, log=log, explicit=explicit).fit()
