"""Training: a few real steps per preset, exact resume (clean stop and SIGKILL), checkpoints, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
from ganserve.cli import main  # noqa: E402
from ganserve.model_io import load_model  # noqa: E402
from ganserve.training.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from ganserve.training.loop import Trainer, TrainingDiverged, _read_otherwise, train  # noqa: E402
from ganserve.training.options import TrainOptions  # noqa: E402

import ganserve  # noqa: E402


def opts(out, preset="dcgan28", steps=6, **kw):
    base = dict(preset=preset, data="digits", out=str(out), steps=steps, batch_size=16, width=8, data_limit=256,
                checkpoint_every=3, eval_every=1000, eval_samples=64, log_every=3, recalibration_batches=2,
                device="cpu")
    base.update(kw)
    return TrainOptions(**base)


def quiet(*_):
    pass


@pytest.mark.parametrize("preset", ganserve.list_presets())
def test_a_few_steps_per_preset(tmp_path, preset):
    width = 16 if preset == "mlp28" else 8
    trainer = Trainer(opts(tmp_path / preset, preset, steps=4, width=width, log_every=2, checkpoint_every=2), log=quiet)
    start = {f"{name}.{k}": v.clone() for name, net in (("G", trainer.G), ("D", trainer.D))
             for k, v in net.named_parameters() if v.dim() > 1}  # the conv and linear weights
    model_dir = trainer.fit()
    now = {f"{name}.{k}": v for name, net in (("G", trainer.G), ("D", trainer.D)) for k, v in net.named_parameters()}
    assert [k for k in start if torch.equal(start[k], now[k])] == []  # both networks learn, every layer
    model = load_model(model_dir)
    assert model.config.preset == preset
    meta = model.metadata
    assert meta["training"]["steps"] == 4 and meta["training"]["weights"] == "ema"
    assert {"fd", "cs", "fd_train_mode", "cs_train_mode"} <= set(meta["metric"])
    rows = [json.loads(line) for line in (tmp_path / preset / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and "fd" in rows[-1]
    assert all(np.isfinite([r["loss_d"], r["loss_g"]]).all() for r in rows)
    assert (tmp_path / preset / "samples" / "step-00000004.png").is_file()
    assert (tmp_path / preset / "curves.png").is_file() or pytest.importorskip("matplotlib") is None
    gen = ganserve.Generator.load(model_dir, backend="numpy")
    assert gen.sample(2).shape[1:3] == model.config.output_shape[1:]


def test_ema_follows_the_generator_with_a_warm_up(tmp_path):
    """The EMA starts as G; the update at step k moves it towards G by 1 - min(decay, (1 + k) / (10 + k)),
    and copies G's batch-norm statistics."""
    trainer = Trainer(opts(tmp_path / "r", steps=100, ema_decay=0.9), log=quiet)

    def params(net):
        return [p.detach().clone() for p in net.parameters()]

    assert all(torch.equal(e, g) for e, g in zip(params(trainer.ema), params(trainer.G)))
    for step, decay in ((0, 0.1), (1, 2 / 11), (80, 0.9)):
        trainer.step = step
        before = params(trainer.ema)
        trainer.train_step(trainer._next_batch())
        after, g = params(trainer.ema), params(trainer.G)
        for e0, e1, gk in zip(before, after, g):
            torch.testing.assert_close(e1, e0 + (1 - decay) * (gk - e0), rtol=1e-5, atol=1e-7)
        assert not all(torch.equal(e, gk) for e, gk in zip(after, g))
    for e, b in zip(trainer.ema.buffers(), trainer.G.buffers()):
        assert torch.equal(e, b)


def test_label_smoothing_is_one_sided(tmp_path):
    """Real targets become 1 - s, fakes stay 0: D's loss grows by s times its mean logit on the real
    batch (BCE(x, 1 - s) - BCE(x, 1) = s x), and G's loss is unchanged."""
    runs = {s: Trainer(opts(tmp_path / str(s), steps=10, label_smoothing=s), log=quiet) for s in (0.0, 0.2)}
    real = runs[0.0]._next_batch()
    with torch.no_grad():
        logit = runs[0.0].D(real).float().mean()
    losses = {s: trainer.train_step(real.clone()) for s, trainer in runs.items()}
    torch.testing.assert_close(losses[0.2][0] - losses[0.0][0], 0.2 * logit, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses[0.2][1], losses[0.0][1])
    assert not torch.equal(next(runs[0.2].D.parameters()), next(runs[0.0].D.parameters()))


def _tensors(path):
    state = load_checkpoint(Path(path))
    return {f"{part}.{k}": v for part in ("G", "D", "EMA") for k, v in state[part].items()}, state


def _assert_identical(a, b):
    ta, sa = _tensors(a)
    tb, sb = _tensors(b)
    assert sa["step"] == sb["step"] and sa["data"] == sb["data"]
    assert ta.keys() == tb.keys() and [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    for group in ("opt_G", "opt_D"):
        assert sa[group]["state"].keys() == sb[group]["state"].keys()
        for pa, pb in zip(sa[group]["state"].values(), sb[group]["state"].values()):
            assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa if torch.is_tensor(pa[k]))
    assert all(torch.equal(x, y) for x, y in zip(sa["rng"][0].values(), sb["rng"][0].values()))


def test_resume_is_bit_identical(tmp_path):
    # upconv32's D has dropout: the saved RNG state matters, not only the weights
    train(opts(tmp_path / "full", "upconv32", steps=9), log=quiet)
    train(opts(tmp_path / "part", "upconv32", steps=6), log=quiet)
    train(opts(tmp_path / "part", "upconv32", steps=9), resume=True, log=quiet)
    _assert_identical(tmp_path / "full" / "last.pt", tmp_path / "part" / "last.pt")
    history = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert history == [3, 6, 9]


def test_learning_rate_steps_take_effect_at_their_step_and_resume_exactly(tmp_path):
    """--lr-d-at/--lr-g-at: the rates change after the step named, a step past the run changes nothing,
    and a run stopped before the change and resumed across it ends as the uninterrupted run does."""
    rates = dict(lr_d_at=((4, 5e-5),), lr_g_at=((5, 1e-4), (7, 2e-5)))
    full = Trainer(opts(tmp_path / "full", "upconv32", steps=9, **rates), log=quiet)
    full.fit()
    assert [g["lr"] for g in full.opt_D.param_groups] == [5e-5] and full.opt_G.param_groups[0]["lr"] == 2e-5
    assert full.opts.learning_rates(3) == (2e-4, 2e-4) and full.opts.learning_rates(4) == (2e-4, 5e-5)
    assert full.opts.learning_rates(6) == (1e-4, 5e-5)
    train(opts(tmp_path / "part", "upconv32", steps=3, **rates), log=quiet)
    train(opts(tmp_path / "part", "upconv32", steps=9, **rates), resume=True, log=quiet)
    _assert_identical(tmp_path / "full" / "last.pt", tmp_path / "part" / "last.pt")

    train(opts(tmp_path / "plain", "upconv32", steps=9), log=quiet)
    logged = []
    train(opts(tmp_path / "later", "upconv32", steps=9, lr_d_at=((9, 1e-6),)), log=logged.append)
    assert "note: --lr-d-at 9 is past --steps 9: it takes effect only if the run is resumed with more steps" in logged
    _assert_identical(tmp_path / "plain" / "last.pt", tmp_path / "later" / "last.pt")
    changed, _ = _tensors(tmp_path / "full" / "last.pt")
    plain, _ = _tensors(tmp_path / "plain" / "last.pt")
    # the changed rates moved every conv and linear weight of both nets elsewhere than the plain run's
    assert [k for k in plain if k.startswith(("G.", "D.")) and plain[k].dim() > 1 and torch.equal(plain[k], changed[k])
            ] == []
    saved = load_checkpoint(tmp_path / "full" / "last.pt")["options"]
    assert TrainOptions.from_saved(saved).lr_g_at == ((5, 1e-4), (7, 2e-5))
    with pytest.raises(ValueError, match=r"trained with lr_d_at=\(\(4, 5e-05\),\), not \(\(4, 1e-05\),\)"):
        Trainer(opts(tmp_path / "full", "upconv32", steps=12), resume=True, explicit={"lr_d_at": ((4, 1e-5),)})


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    cmd = [sys.executable, "-m", "ganserve", "train", "--preset", "dcgan28", "--data", "digits", "--width", "8",
           "--data-limit", "256", "--batch-size", "16", "--checkpoint-every", "1", "--log-every", "1",
           "--eval-every", "1000", "--eval-samples", "64", "--device", "cpu", "--steps", "40"]
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "step-00000005.pt").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of whatever it is doing, saves included
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt")["step"]
    assert 5 <= killed_at < 40
    resumed = subprocess.run(cmd + ["--out", str(run), "--resume", "--steps", "12"], capture_output=True, text=True,
                             timeout=300)
    if killed_at > 12:
        assert resumed.returncode == 0  # already past: just exports
        pytest.skip("the run had passed step 12 when it was killed")
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run(cmd[:-1] + ["12", "--out", str(tmp_path / "clean")], capture_output=True, text=True,
                           timeout=300)
    assert clean.returncode == 0, clean.stderr
    _assert_identical(tmp_path / "clean" / "last.pt", run / "last.pt")
    assert not list(run.glob(".*.tmp")) and not list((run / "checkpoints").glob(".*.tmp"))


def test_a_save_cut_short_leaves_last_pt_whole(tmp_path, monkeypatch):
    """A save that dies half-written (disk full, a kill) never touches last.pt: it is written under
    a temporary name and renamed only once whole."""
    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    before = (run / "last.pt").read_bytes()
    trainer = Trainer(opts(run, steps=6), resume=True, log=quiet)

    def save_half(obj, path):
        Path(path).write_bytes(before[:len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(OSError, match="No space left"):
        trainer.save()
    assert (run / "last.pt").read_bytes() == before
    monkeypatch.undo()
    trainer.close()
    assert Trainer(opts(run, steps=6), resume=True, log=quiet).fit() == run / "model"
    assert load_checkpoint(run / "last.pt")["step"] == 6 and not list(run.glob(".*.tmp"))


def test_keeps_a_few_checkpoints_and_best(tmp_path):
    train(opts(tmp_path / "r", steps=12, checkpoint_every=3, eval_every=6, keep=2), log=quiet)
    kept = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert kept == ["step-00000009.pt", "step-00000012.pt"]
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "fd" in r]
    assert [r["step"] for r in evaluated] == [6, 12]
    lowest = min(evaluated, key=lambda r: r["fd"])
    best = load_checkpoint(tmp_path / "r" / "best.pt")
    assert best["step"] == lowest["step"] and best["best_fd"] == lowest["fd"]


def test_keep_zero_keeps_no_step_checkpoints(tmp_path):
    train(opts(tmp_path / "r", steps=6, keep=0), log=quiet)
    assert list((tmp_path / "r" / "checkpoints").iterdir()) == []
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 6


def test_evaluations_and_checkpoints_off_the_logging_steps(tmp_path):
    train(opts(tmp_path / "r", steps=8, log_every=3, checkpoint_every=4, eval_every=5), log=quiet)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 4, 5, 6, 8]
    assert [r["step"] for r in rows if "fd" in r] == [5, 8]
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == [
        "step-00000004.pt", "step-00000005.pt", "step-00000008.pt"]  # 5: the first evaluation is the best yet


def test_sample_grid_shows_what_users_get(tmp_path):
    """The grid of the last evaluation is the exported model's first 64 samples of seed 0."""
    from ganserve.images import make_grid

    model_dir = train(opts(tmp_path / "r", steps=4), log=quiet)
    grid = np.asarray(Image.open(tmp_path / "r" / "samples" / "step-00000004.png"))
    expected = make_grid(ganserve.Generator.load(model_dir, backend="torch", device="cpu").sample(64, seed=0))
    assert grid.shape == expected.shape[:2]
    np.testing.assert_array_equal(grid, expected[..., 0])  # the same torch computation on the same weights


def test_train_mode_sampling_never_makes_a_batch_of_one():
    """mlp28's BatchNorm1d cannot take a batch of one image in train mode."""
    from ganserve.torch_model import build_generator
    from ganserve.training.evaluate import sample_images

    net = build_generator(ganserve.create_config("mlp28", width=16))
    assert sample_images(net, 17, seed=0, train_mode=True, batch_size=16).shape == (17, 28, 28, 1)


def test_resume_keeps_the_runs_own_steps(tmp_path, capsys):
    """`ganserve train --out RUN --resume` alone continues to the run's --steps, not the default's."""
    run = tmp_path / "r"
    train(opts(run, steps=6, checkpoint_every=3, log_every=3), log=quiet)
    (run / "last.pt").rename(tmp_path / "uninterrupted.pt")
    (run / "checkpoints" / "step-00000006.pt").unlink()
    (run / "checkpoints" / "step-00000003.pt").rename(run / "last.pt")  # as if killed after the step-3 checkpoint
    assert main(["train", "--out", str(run), "--resume"]) == 0, capsys.readouterr().err
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 6 and state["options"]["steps"] == 6 and state["options"]["checkpoint_every"] == 3
    _assert_identical(tmp_path / "uninterrupted.pt", run / "last.pt")


def test_resume_on_another_device_type_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["device_type"] == "cpu"
    state["device_type"] = "cuda"  # as written by a GPU run
    torch.save(state, run / "last.pt")

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the device was checked")

    monkeypatch.setattr("ganserve.training.loop.load_dataset", no_data)  # refused before a long data load
    with pytest.raises(ValueError, match=r"written on cuda, this run is on cpu; resume it on a cuda device \(--device"):
        Trainer(opts(run, steps=6), resume=True)


def test_resume_may_name_another_device_of_the_same_type(tmp_path):
    run = tmp_path / "r"
    train(opts(run, steps=3, device="auto"), log=quiet)  # saved as device="auto", ran on the CPU
    trainer = Trainer(opts(run, steps=6), resume=True, explicit={"device": "cpu", "steps": 6})
    assert trainer.opts.device == "cpu" and trainer.step == 3
    trainer.close()
    with pytest.raises(ValueError, match="trained with lr_g=0.0002, not 0.001"):
        Trainer(opts(run, steps=6), resume=True, explicit={"device": "cpu", "lr_g": 1e-3})


def test_resume_on_changed_data_is_refused(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    train(opts(tmp_path / "r", steps=3, data=str(folder), data_limit=None), log=quiet)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / "20.png")  # one image more
    with pytest.raises(ValueError, match="not the data the checkpoint was trained on .20 images then, 21 now.; "
                                         "if these are the files it was trained on, this ganserve reads them"):
        Trainer(opts(tmp_path / "r", steps=6, data=str(folder), data_limit=None), resume=True)
    (folder / "20.png").unlink()
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / "00.png")  # one image changed
    with pytest.raises(ValueError, match=r"\(20 images, other contents\)"):
        Trainer(opts(tmp_path / "r", steps=6, data=str(folder), data_limit=None), resume=True)


def test_a_run_folder_takes_one_process_at_a_time(tmp_path, capsys):
    """A --resume started while the run still trains is refused, and removes none of its files."""
    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    live = Trainer(opts(run, steps=6), resume=True, log=quiet)
    in_flight = run / ".last.pt.in-flight.tmp"  # a save the live run is writing
    in_flight.write_bytes(b"half")
    with pytest.raises(FileExistsError, match=f"{run} is in use: another process is training in it"):
        Trainer(opts(run, steps=9), resume=True, log=quiet)
    capsys.readouterr()
    code = main(["train", "--out", str(run), "--resume", "--steps", "9"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {run} is in use") and len(err.splitlines()) == 1
    assert in_flight.exists()
    in_flight.unlink()
    assert live.fit() == run / "model"  # fit() lets go of the folder when it ends
    assert Trainer(opts(run, steps=9), resume=True, log=quiet).fit() == run / "model"
    assert load_checkpoint(run / "last.pt")["step"] == 9
    # a start refused for another reason lets go of the folder at once
    with pytest.raises(ValueError, match="trained with lr_g"):
        Trainer(opts(run, steps=12), resume=True, explicit={"lr_g": 1e-3})
    Trainer(opts(run, steps=12), resume=True, log=quiet).close()
    # a new run holds its folder too
    fresh = Trainer(opts(tmp_path / "new", steps=3), log=quiet)
    with pytest.raises(FileExistsError, match="is in use"):
        Trainer(opts(tmp_path / "new", steps=3), log=quiet)
    fresh.close()


def test_resume_with_another_thread_count_says_so(tmp_path):
    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["threads"] == torch.get_num_threads()
    said = []
    Trainer(opts(run, steps=6), resume=True, log=said.append).close()
    assert not any("thread" in line for line in said)
    state["threads"] = torch.get_num_threads() + 1
    torch.save(state, run / "last.pt")
    Trainer(opts(run, steps=6), resume=True, log=said.append).close()
    assert [line for line in said if "thread" in line] == [
        f"note: the checkpoint was written by a process with {state['threads']} threads, this one has "
        f"{torch.get_num_threads()}: the run goes on, but CPU results depend on the thread count, so it will not "
        f"be bit-identical to an uninterrupted run (OMP_NUM_THREADS={state['threads']} would make it so)"]


def test_refuses_to_overwrite_a_run(tmp_path):
    train(opts(tmp_path / "r", steps=3), log=quiet)
    with pytest.raises(FileExistsError, match="pass --resume"):
        Trainer(opts(tmp_path / "r", steps=6))


def test_resume_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(opts(tmp_path / "none"), resume=True)
    train(opts(tmp_path / "r", steps=3), log=quiet)
    code = main(["train", "--out", str(tmp_path / "r"), "--resume", "--preset", "upconv32", "--steps", "6"])
    err = capsys.readouterr().err
    assert code == 1 and "trained with preset='dcgan28', not 'upconv32'" in err
    last = tmp_path / "r" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    code = main(["train", "--out", str(tmp_path / "r"), "--resume", "--steps", "6"])
    err = capsys.readouterr().err
    assert code == 1 and "truncated, corrupt or not a checkpoint" in err and len(err.strip().splitlines()) == 1


def test_checkpoint_without_its_history_is_refused(tmp_path):
    train(opts(tmp_path / "r", steps=3), log=quiet)
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    del state["history"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"missing \['history'\]"):
        load_checkpoint(tmp_path / "partial.pt")


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="not a ganserve training checkpoint"):
        load_checkpoint(bad)


def _all_finite(state):
    return all(torch.isfinite(v).all() for part in ("G", "D", "EMA") for v in state[part].values()
               if v.is_floating_point())


def test_diverged_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr 1e30: step 1 moves every weight by about 1e30 (still finite); step 2's losses overflow.
    run = tmp_path / "r"
    with pytest.raises(TrainingDiverged) as caught:
        train(opts(run, steps=60, lr_g=1e30, lr_d=1e30, checkpoint_every=1, log_every=1), log=quiet)
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 1 and _all_finite(state)
    # --resume refuses another learning rate: the advice is a new run, or keeping the checkpoint's model
    assert str(caught.value) == (
        f"loss became NaN/Inf by step 2; the last good checkpoint is {run / 'last.pt'} (step 1): to train on, "
        f"start a new run (another --out) with a lower --lr-g/--lr-d or --label-smoothing (--resume keeps the "
        f"learning rates and would diverge again); ganserve export --ckpt {run / 'last.pt'} keeps its model if it "
        f"is worth keeping")


def test_weights_that_overflow_are_never_saved(tmp_path, capsys):
    """lr 1e39 is Inf in float32: step 1's losses are finite but its update makes the weights Inf.
    The run stops before saving, evaluating or exporting them."""
    run = tmp_path / "r"
    code = main(["train", "--out", str(run), "--data", "digits", "--data-limit", "256", "--width", "8",
                 "--batch-size", "16", "--device", "cpu", "--steps", "5", "--checkpoint-every", "1",
                 "--log-every", "1", "--eval-every", "1", "--eval-samples", "64", "--lr-g", "1e39", "--lr-d", "1e39"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == ("error: the weights became NaN/Inf by step 1; no checkpoint was written "
                                     "before it (run again with a lower --lr-g/--lr-d or --label-smoothing)")
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists() and not (run / "model").exists()


def test_an_overflowed_adam_moment_is_never_saved(tmp_path):
    """A gradient of 1e25 on one of D's weights: its Adam second moment overflows to Inf, the update
    it drives is 0, so every weight and loss stays finite; the run still stops before saving."""
    run = tmp_path / "r"
    trainer = Trainer(opts(run, steps=5, checkpoint_every=1, log_every=1), log=quiet)
    weight = next(p for p in trainer.D.parameters() if p.dim() > 1)
    weight.register_hook(lambda grad: grad * 1e25)
    with pytest.raises(TrainingDiverged, match=r"^Adam's moment estimates became NaN/Inf \(a gradient overflowed\) "
                                               r"by step 1; no checkpoint was written before it"):
        trainer.fit()
    assert torch.isinf(trainer.opt_D.state[weight]["exp_avg_sq"]).any()
    assert torch.isfinite(weight).all()
    assert _all_finite(trainer.state())
    assert not (run / "last.pt").exists() and not (run / "model").exists()


@pytest.mark.parametrize("args,message", [
    (["--steps", "0"], "--steps must be positive"),
    (["--data", ""], "--data is empty"),
    (["--lr-g", "inf"], "--lr-g must be positive and finite, got inf"),
    (["--beta1", "1.5"], "--beta1 must be in [0, 1), got 1.5"),
    (["--data", "/no/data"], "data not found"),
    (["--preset", "dcgan1024"], "unknown preset"),
    (["--label-smoothing", "0.7"], "--label-smoothing must be in"),
    (["--lr-d-at", "5000"], "--lr-d-at takes STEP:LR (e.g. 56000:5e-5), got '5000'"),
    (["--lr-g-at", "5000:fast"], "--lr-g-at takes STEP:LR"),
    (["--lr-d-at", "0:1e-4"], "--lr-d-at: steps must be positive and rates positive and finite, got 0:0.0001"),
    (["--lr-d-at", "9:1e-4", "--lr-d-at", "5:1e-5"], "--lr-d-at: steps must be distinct and in increasing order"),
    (["--seed", "4294967296"], "--seed must be in 0..4294967295, got 4294967296"),
    (["--keep", "-1"], "--keep must be >= 0, got -1"),
    (["--channels", "0"], "--channels must be 1 or 3, got 0"),
    (["--channels", "2"], "--channels must be 1 or 3, got 2"),
])
def test_cli_errors(tmp_path, capsys, args, message):
    code = main(["train", "--out", str(tmp_path / "r"), "--data", "digits", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_a_run_folder_inside_its_image_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(folder / f"{i}.png")
    code = main(["train", "--out", str(folder / "run"), "--data", str(folder), "--device", "cpu", "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and f"--out {folder / 'run'} is inside the --data folder" in err[0]
    assert not (folder / "run").exists()  # refused before anything was written


def test_resume_from_another_folder_with_a_relative_data_path(tmp_path, monkeypatch, capsys):
    """The run records its data's absolute path; the data is then checked by its contents, not by
    how its path was spelled; options left at their defaults may be given explicitly."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    monkeypatch.chdir(tmp_path)
    train(opts("r", steps=3, data="images", data_limit=None), log=quiet)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["options"]["data"] == str(folder)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--out", "../r", "--resume", "--steps", "4"]) == 0, capsys.readouterr().err
    assert main(["train", "--out", "../r", "--resume", "--steps", "5", "--data", "../images",
                 "--channels", "1", "--no-amp"]) == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 5
    code = main(["train", "--out", "../r", "--resume", "--steps", "6", "--width", "16"])
    assert code == 1 and "trained with width=8, not 16" in capsys.readouterr().err
    code = main(["train", "--out", "../r", "--resume", "--steps", "6", "--amp"])
    assert code == 1 and "trained with amp=False, not True" in capsys.readouterr().err


def test_a_checkpoint_whose_state_does_not_fit_is_one_clear_error(tmp_path, capsys):
    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    del state["G"]["layers.1.weight"]
    torch.save(state, run / "last.pt")
    capsys.readouterr()
    code = main(["train", "--out", str(run), "--resume", "--steps", "6"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "its state does not fit this run" in err[0] and "layers.1.weight" in err[0]


def test_checkpoint_load_errors_name_the_cause(tmp_path):
    import os as os_module

    class Code:
        def __reduce__(self):
            return (os_module.system, ("true",))

    torch.save({"x": Code()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match=r"code.pt: refused: it holds pickled objects other than tensors "
                                              r"and plain containers \(.*system\); ganserve never executes code"):
        load_checkpoint(tmp_path / "code.pt")

    class Eval:
        def __reduce__(self):
            return (eval, ("1",))

    torch.save({"format": "ganserve-train-checkpoint", "x": Eval()}, tmp_path / "eval.pt")
    with pytest.raises(CheckpointError) as caught:  # torch's own text advises loading it unsafely
        load_checkpoint(tmp_path / "eval.pt")
    message = str(caught.value)
    assert message == (f"{tmp_path / 'eval.pt'}: refused: it holds pickled objects other than tensors and plain "
                       f"containers (eval); ganserve never executes code from a file")
    (tmp_path / "text.pt").write_text("hello\n")
    with pytest.raises(CheckpointError, match=r"not a whole torch checkpoint file: cut short, or another kind"):
        load_checkpoint(tmp_path / "text.pt")


def test_a_checkpoint_changed_on_disk_is_refused(tmp_path):
    train(opts(tmp_path / "run", steps=3), log=quiet)
    path = tmp_path / "run" / "last.pt"
    load_checkpoint(path)  # whole: loads
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor's storage: torch.load alone would read it
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint \(.*/data/\d+ fails its CRC check"):
        load_checkpoint(path)


def test_a_kill_before_best_pt_was_linked_is_repaired_on_resume(tmp_path):
    run = tmp_path / "r"
    train(opts(run, steps=6, checkpoint_every=3, eval_every=3, keep=5), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    state["history"][-1]["best"] = True  # last.pt is the best so far...
    torch.save(state, run / "last.pt")
    (run / "best.pt").unlink()
    os.link(run / "checkpoints" / "step-00000003.pt", run / "best.pt")  # ...but the kill came before the link
    Trainer(opts(run, steps=6, checkpoint_every=3, eval_every=3, keep=5), resume=True, log=quiet)
    assert (run / "best.pt").samefile(run / "last.pt")


def test_export_of_a_checkpoint_matches_the_run(tmp_path):
    pytest.importorskip("onnx")
    import numpy as np

    from ganserve.export.export import ExportOptions, export

    run = tmp_path / "r"
    model_dir = train(opts(run, steps=3, eval_every=3), log=quiet)
    out = export(run / "last.pt", tmp_path / "exported", ExportOptions(), log=quiet)
    a, b = load_model(model_dir), load_model(out)
    assert max(float(np.abs(a.weights[k] - b.weights[k]).max()) for k in a.weights) < 1e-6
    assert b.metadata["metric"]["step"] == 3 and b.metadata["metric"] == a.metadata["metric"]
    raw = load_model(export(run / "last.pt", tmp_path / "raw", ExportOptions(weights="raw", onnx=False), log=quiet))
    assert raw.metadata["exported_from"]["weights"] == "raw"
    assert raw.metadata["metric"] == {}  # the loop scored the EMA, not these weights
    # the trained parameters are G's, not the EMA's (batch-norm statistics are recomputed for either)
    state = torch.load(run / "last.pt", weights_only=True)
    learned = [k for k in state["G"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in learned:
        np.testing.assert_array_equal(raw.weights[k], state["G"][k].float().numpy())
    assert any(not np.array_equal(raw.weights[k], b.weights[k]) for k in learned)


def test_export_checkpoint_errors(tmp_path):
    from ganserve.export.export import ExportOptions, export

    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    state["EMA"]["layers.99.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ganserve.ModelFormatError, match=r"unexpected \['layers.99.weight'\]"):
        export(tmp_path / "extra.pt", tmp_path / "o1", ExportOptions(onnx=False), log=quiet)
    state["EMA"].pop("layers.99.weight")
    state["config"]["preset"] = "nope"
    state["config"]["layers"][1]["type"] = "warp"
    torch.save(state, tmp_path / "arch.pt")
    with pytest.raises(ganserve.ModelFormatError, match="unknown layer type 'warp'"):
        export(tmp_path / "arch.pt", tmp_path / "o2", ExportOptions(onnx=False), log=quiet)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        export(tmp_path / "junk.pt", tmp_path / "o3", ExportOptions(onnx=False), log=quiet)
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))


def _without_export_facts(metadata):
    """What the run's own export and `ganserve export` of its last checkpoint share: all but where the
    export came from and the wall time (the run's own export comes later)."""
    training = {k: v for k, v in metadata["training"].items() if k != "wall_time_s"}
    return {**{k: v for k, v in metadata.items() if k != "exported_from"}, "training": training}


def test_export_of_a_checkpoint_records_what_the_run_recorded(tmp_path, capsys):
    run = tmp_path / "r"
    model_dir = train(opts(run, steps=6, checkpoint_every=3, eval_every=3, keep=5), log=quiet)
    assert main(["export", "--ckpt", str(run / "last.pt"), "--out", str(tmp_path / "last"), "--no-onnx"]) == 0, \
        capsys.readouterr().err
    ours, exported = load_model(model_dir).metadata, load_model(tmp_path / "last").metadata
    assert _without_export_facts(exported) == _without_export_facts(ours)
    assert {"command", "hardware", "wall_time_s", "train_time_s", "images", "images_seen", "batch_norm"} <= set(
        exported["training"])
    assert exported["metric"]["step"] == 6 and exported["training"]["data"] == "digits"
    # an earlier checkpoint: its own step's evaluation, its own counts
    assert main(["export", "--ckpt", str(run / "checkpoints" / "step-00000003.pt"), "--out", str(tmp_path / "three"),
                 "--no-onnx"]) == 0, capsys.readouterr().err
    three = load_model(tmp_path / "three").metadata
    assert three["metric"]["step"] == 3 and three["metric"]["fd"] == [
        r for r in load_checkpoint(run / "last.pt")["history"] if r["step"] == 3][0]["fd"]
    assert three["training"]["steps"] == 3 and three["training"]["images_seen"] == 3 * 16
    assert three["exported_from"] == {"checkpoint": str(run / "checkpoints" / "step-00000003.pt"), "step": 3,
                                      "weights": "ema"}


def test_export_of_a_run_without_ema_says_raw(tmp_path):
    from ganserve.export.export import ExportOptions, export

    run = tmp_path / "r"
    model_dir = train(opts(run, steps=2, ema_decay=0.0, eval_every=2), log=quiet)
    meta = load_model(export(run / "last.pt", tmp_path / "o", ExportOptions(onnx=False), log=quiet)).metadata
    assert meta["exported_from"]["weights"] == "raw" and "the run kept no EMA" in meta["exported_from"]["note"]
    assert meta["metric"]["step"] == 2  # the loop scored G, these weights
    assert meta["training"]["weights"] == "raw" == load_model(model_dir).metadata["training"]["weights"]


def test_wall_time_counts_the_whole_run_over_its_sessions(tmp_path, monkeypatch):
    """wall_time_s: training, evaluations, checkpoints, summed over resumed sessions; train_time_s: steps only."""
    evaluate = Trainer.evaluate

    def slow_evaluate(self, row):
        time.sleep(0.5)
        evaluate(self, row)

    monkeypatch.setattr(Trainer, "evaluate", slow_evaluate)
    run = tmp_path / "r"
    train(opts(run, steps=3, eval_every=3), log=quiet)
    first = load_checkpoint(run / "last.pt")
    assert first["wall_time_s"] >= first["elapsed_s"] + 0.5
    train(opts(run, steps=6, eval_every=3), resume=True, log=quiet)
    second = load_checkpoint(run / "last.pt")
    assert second["wall_time_s"] >= first["wall_time_s"] + 0.5
    training = load_model(run / "model").metadata["training"]
    assert training["train_time_s"] == round(second["elapsed_s"], 1)
    assert training["wall_time_s"] >= round(second["wall_time_s"], 1) >= training["train_time_s"] + 1.0


def test_a_checkpoint_without_the_newer_facts_exports_and_resumes(tmp_path):
    from ganserve.export.export import ExportOptions, export

    run = tmp_path / "r"
    train(opts(run, steps=3), log=quiet)
    state = torch.load(run / "last.pt", weights_only=True)
    for key in ("wall_time_s", "command", "hardware"):
        state.pop(key, None)
    state["data"].pop("source", None)
    torch.save(state, run / "last.pt")
    training = load_model(export(run / "last.pt", tmp_path / "o", ExportOptions(onnx=False), log=quiet)).metadata[
        "training"]
    assert not {"wall_time_s", "command", "hardware"} & set(training) and training["data"] == "digits"
    assert training["train_time_s"] == round(state["elapsed_s"], 1)
    train(opts(run, steps=4), resume=True, log=quiet)
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["step"] == 4 and resumed["wall_time_s"] is None  # the earlier sessions' is not known
    assert resumed["hardware"].startswith("unknown; then ")
    assert "wall_time_s" not in load_model(run / "model").metadata["training"]


def test_a_run_resumed_on_other_hardware_records_both(tmp_path, monkeypatch):
    import ganserve.training.loop as loop

    run = tmp_path / "r"
    monkeypatch.setattr(loop, "_hardware", lambda device: "machine A")
    train(opts(run, steps=2), log=quiet)
    train(opts(run, steps=3), resume=True, log=quiet)  # the same machine: said once
    assert load_checkpoint(run / "last.pt")["hardware"] == "machine A"
    monkeypatch.setattr(loop, "_hardware", lambda device: "machine B")
    for steps in (4, 5):  # a second session on B adds nothing
        train(opts(run, steps=steps), resume=True, log=quiet)
        assert load_checkpoint(run / "last.pt")["hardware"] == "machine A; then machine B"
    assert load_model(run / "model").metadata["training"]["hardware"] == "machine A; then machine B"


def test_resume_on_data_of_other_channels_names_them(tmp_path):
    run = tmp_path / "r"
    train(opts(run, steps=2), log=quiet)
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, images=np.random.default_rng(0).integers(0, 256, (40, 28, 28, 3), dtype=np.uint8))
    with pytest.raises(ValueError) as caught:
        Trainer(opts(run, steps=4, data=str(rgb)), resume=True, log=quiet)
    assert str(caught.value) == (f"--resume: {rgb} holds 3-channel images; the run in {run} was trained on "
                                 f"1-channel images (resume it on its own data){_read_otherwise(str(rgb))}")


def test_only_files_a_newer_loader_may_read_otherwise_get_that_hint(tmp_path):
    idx = tmp_path / "train-images-idx3-ubyte"
    idx.touch()
    assert _read_otherwise("digits") == _read_otherwise("fashion-mnist") == _read_otherwise(str(idx)) == ""
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    (cifar / "data_batch_1").touch()
    assert _read_otherwise(str(cifar)) == _read_otherwise(str(cifar / "data_batch_1")) == ""
    for source in (tmp_path, tmp_path / "a.npz", tmp_path / "a.PNG"):
        assert "reads them differently" in _read_otherwise(str(source)), source


def test_resume_past_its_steps_trains_and_rewrites_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    train(opts(run, steps=6), log=quiet)
    before = (run / "model" / "config.json").stat()
    assert main(["train", "--out", str(run), "--resume", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{run}: already past --steps 2, at step 6; nothing to train" in out and "written" not in out
    after = (run / "model" / "config.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    shutil.rmtree(run / "model")  # as if killed before its export: the model is written
    assert main(["train", "--out", str(run), "--resume", "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert f"{run}: already at --steps 6; nothing to train" in out and f"model written to {run / 'model'}" in out
    assert load_model(run / "model").metadata["training"]["steps"] == 6


def test_an_evaluation_too_large_for_the_machine_is_refused_before_training(tmp_path):
    from ganserve._system import total_memory

    run, samples = tmp_path / "r", total_memory() // 1000  # over 1,000 bytes a sample: more than all memory
    error = (rf"^--eval-samples {samples:,} needs about [\d,.]+ GiB per evaluation, "
             r"more than this machine's [\d,.]+ GiB of memory; use fewer$")
    with pytest.raises(ValueError, match=error):
        Trainer(opts(run, steps=2, eval_samples=samples), log=quiet)
    with pytest.raises(ValueError, match=error):  # refused before the data is read (there is none to read)
        Trainer(opts(run, steps=2, eval_samples=samples, data=str(tmp_path / "no-data")), log=quiet)
    assert not (run / "last.pt").exists()
    Trainer(opts(tmp_path / "ok", steps=2, eval_samples=100_000), log=quiet)  # 100k samples fit anywhere
