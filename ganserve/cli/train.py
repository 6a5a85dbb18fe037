"""`ganserve train`, `ganserve eval`: training and the quality metric (need the `train` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..latents import check_index
from . import app, stopped_by
from .options import BACKEND_OPT, MODEL_ARG, TRUNCATION_OPT


def _torch_or_hint() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ImportError("training needs torch: pip install 'ganserve[train]'")


@app.command()
def train(
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Architecture (default dcgan28)."),
    data: Optional[str] = typer.Option(
        None, "--data", "-d", help="fashion-mnist (default), digits, an image folder, IDX, .npz or CIFAR-10 path "
        "(a name means the built-in data even beside a folder of that name: write ./NAME for the folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (checkpoints, logs, samples, model/)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Total training steps (default 10000; --resume keeps the run's own unless given)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the whole run (default 0)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Per process (default 64); smaller batches learn more per image (README)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Default 1000."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Default 1000."),
    eval_samples: Optional[int] = typer.Option(None, "--eval-samples", help="Default 5000."),
    keep: Optional[int] = typer.Option(None, "--keep", help="Step checkpoints kept in checkpoints/ (default 3)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Default 50."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt."),
    lr_g: Optional[float] = typer.Option(None, "--lr-g", help="Generator learning rate (default 2e-4)."),
    lr_d: Optional[float] = typer.Option(None, "--lr-d", help="Discriminator learning rate (default 2e-4)."),
    lr_g_at: Optional[List[str]] = typer.Option(
        None, "--lr-g-at", help="STEP:LR: from STEP steps on, G's learning rate is LR (repeatable)."),
    lr_d_at: Optional[List[str]] = typer.Option(
        None, "--lr-d-at", help="STEP:LR: from STEP steps on, D's learning rate is LR (repeatable; e.g. 56000:5e-5)."),
    beta1: Optional[float] = typer.Option(None, "--beta1", help="Adam's beta1, both nets (default 0.5)."),
    ema_decay: Optional[float] = typer.Option(
        None, "--ema-decay", help="Default 0.999; at step k the EMA uses min(decay, (1 + k) / (10 + k)), so the first "
                                  "steps' weights fade fast. 0 disables the EMA generator."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help="One-sided, e.g. 0.1."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 or 3 (default: the data's)."),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", help="Latent size (default: the preset's)."),
    width: Optional[int] = typer.Option(None, "--width", help="Base feature maps (default: the preset's)."),
    data_limit: Optional[int] = typer.Option(None, "--data-limit", help="Use only the first N images."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on CUDA)."),
) -> None:
    """Train a DCGAN; under `torchrun --nproc_per_node=N -m ganserve train ...` it runs DDP."""
    _torch_or_hint()
    from ganserve.training.loop import TrainingDiverged
    from ganserve.training.loop import train as run_training
    from ganserve.training.options import TrainOptions, parse_rate_steps

    given = dict(preset=preset, data=data, seed=seed, batch_size=batch_size, lr_g=lr_g, lr_d=lr_d,
                 lr_g_at=parse_rate_steps(lr_g_at, "--lr-g-at"), lr_d_at=parse_rate_steps(lr_d_at, "--lr-d-at"),
                 beta1=beta1, ema_decay=ema_decay, label_smoothing=label_smoothing, channels=channels,
                 latent_dim=latent_dim, width=width, data_limit=data_limit, device=device, amp=amp, steps=steps,
                 checkpoint_every=checkpoint_every, eval_every=eval_every, eval_samples=eval_samples, keep=keep,
                 log_every=log_every)
    explicit = {k: v for k, v in given.items() if v is not None}
    # With --resume, what was not given comes from the checkpoint (the Trainer merges `explicit` into it).
    control = {k: v for k, v in explicit.items() if k in TrainOptions.RUN_CONTROL}
    opts = TrainOptions(out=str(out), **(control if resume else explicit))
    try:
        run_training(opts, resume=resume, log=typer.echo, explicit=explicit)  # says where the model went
    except TrainingDiverged as e:
        raise ValueError(str(e)) from None
    except KeyboardInterrupt as e:
        what, code = stopped_by(e)
        typer.echo(f"{what}: {_how_to_go_on(out, resume)}", err=True)
        raise typer.Exit(code) from None


def _how_to_go_on(run: Path, resume: bool) -> str:
    """After Ctrl-C: --resume continues from RUN/last.pt where there is one; without it, it cannot."""
    last = run / "last.pt"
    if not last.is_file():
        return f"no checkpoint was written yet ({last}); run the same command again to start over"
    again = "run the same command again" if resume else "add --resume to the same command"
    return f"checkpoints already written are kept; {again} to continue from {last}"


@app.command("eval")
def eval_(
    model: Optional[str] = MODEL_ARG,
    data: str = typer.Option("fashion-mnist", "--data", "-d", help="Real data to compare with."),
    samples: int = typer.Option(10_000, "--samples", "--n", "-n", help="Generated images scored."),
    seed: int = typer.Option(0, "--seed", help="Seed of their latents."),
    truncation: Optional[float] = TRUNCATION_OPT,
    backend: str = BACKEND_OPT,
    calibrate: bool = typer.Option(False, "--calibrate", help="Also score real test images, sharp and blurred."),
    inception_weights: Optional[Path] = typer.Option(
        None, "--inception-weights", help="Also compute the standard Inception FID with these local weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
) -> None:
    """Score a model: Frechet distance (FD) and classifier score (CS) in the shipped classifier's features."""
    _torch_or_hint()
    import json

    from ganserve.training.evaluate import calibration, check_calibration_data, evaluate_model
    from ganserve.training.metrics import classifier_info

    check_index(samples, "--samples", minimum=2)
    check_index(seed, "--seed")
    if calibrate:  # a wrong --data is said before the long scoring
        check_calibration_data(data)
    if inception_weights is not None:  # a missing file or package is said before the long scoring
        from ganserve.training.inception import load_inception

        inception = load_inception(inception_weights)
    result = {"model": evaluate_model(model, data, samples, seed, backend, truncation)}
    if calibrate:
        result.update(calibration(data, samples))
    if inception_weights is not None:
        from ganserve.generator import Generator
        from ganserve.training.evaluate import reference_images
        from ganserve.training.inception import inception_fid

        gen = Generator.load(model, backend=backend)
        real = reference_images(data, gen.config.output_shape, samples)
        fakes = gen.sample(samples, seed=seed, truncation=truncation)  # the samples FD and CS scored
        result["model"]["inception_fid"] = inception_fid(fakes, real, inception)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    info = classifier_info()
    typer.echo(f"classifier: test accuracy {info.get('test_accuracy', float('nan')):.4f}; "
               f"FD lower is better, CS higher is better")
    psi = f", truncation psi {truncation:g}" if truncation is not None else ""
    typer.echo(f"{samples} samples of seed {seed}{psi} ({result['model']['backend']} backend) against "
               f"{result['model']['reference']}")
    rows = list(result.items())
    at_size = result["model"].get("at_data_size")
    if at_size:  # a model larger than the data, scored against the images at their own size too
        rows.insert(1, (f"model, at the data's {at_size['size'][0]}x{at_size['size'][1]}", at_size))
    for name, row in rows:
        extra = f"  Inception FID {row['inception_fid']:.2f}" if "inception_fid" in row else ""
        typer.echo(f"{name:30s} FD {row['fd']:8.3f}  CS {row['cs']:6.3f}{extra}")
