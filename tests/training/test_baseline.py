"""The seeds' recipe (the yardstick of the README's comparison): its loop runs in both data modes."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from ganserve.training.baseline import seed_loop, seed_models, train_mode_samples  # noqa: E402


@pytest.mark.parametrize("fast_data", [False, True])
def test_seed_loop_trains_and_reports_its_last_losses(fast_data):
    torch.manual_seed(0)
    G, D = seed_models("mlp28")
    before = [p.detach().clone() for p in G.parameters()]
    images = torch.rand(20, 1, 28, 28) * 2 - 1
    result = seed_loop(G, D, images, steps=5, batch_size=8, fast_data=fast_data)  # 3 batches per epoch, the last ragged
    assert result["steps"] == 5 and result["images_per_s"] > 0
    assert math.isfinite(result["d_loss"]) and math.isfinite(result["g_loss"])  # fewer steps than the 500 between reads
    assert all(not torch.equal(a, b) for a, b in zip(before, G.parameters()))  # every layer of G learned
    samples = train_mode_samples(G, 5, batch_size=2)  # a batch of one in train mode would fail: 5 = 2 + 2 + 1
    assert samples.shape == (5, 28, 28, 1) and samples.dtype.name == "uint8"


def test_seed_models_initialise_as_the_seed_script():
    """Conv weights N(0, 0.02) and BatchNorm2d N(1, 0.02) / 0, as `weights_init_normal`; linear layers and
    conv biases keep PyTorch's defaults (ganserve's own dcgan_init sets those to N(0, 0.02) and 0)."""
    G, D = seed_models("upconv32", seed=0)
    convs = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.BatchNorm2d)]
    linears = [m for m in [*G.modules(), *D.modules()] if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 7 and len(norms) == 6 and len(linears) == 2
    for conv in convs:
        assert abs(conv.weight.std().item() - 0.02) < 0.003
        assert conv.bias.abs().max().item() > 0.01  # default init, not zeroed
    for norm in norms:
        assert abs(norm.weight.mean().item() - 1) < 0.01 and 0.01 < norm.weight.std().item() < 0.03
        assert not norm.bias.any()
    projection = linears[0]  # Linear(100, 8192): default init is U(-0.1, 0.1), std 0.058
    assert abs(projection.weight.std().item() - 0.1 / 3 ** 0.5) < 0.002


def test_seed_models_depend_on_the_seed_only():
    G0, D0 = seed_models("upconv32", seed=0)
    torch.manual_seed(123)  # the global RNG state before the call does not matter
    G0_again, _ = seed_models("upconv32", seed=0)
    G1, D1 = seed_models("upconv32", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(G0.parameters(), G0_again.parameters()))
    assert not torch.equal(G0.layers[0].weight, G1.layers[0].weight)
    assert not torch.equal(D0[0][0].weight, D1[0][0].weight)


@pytest.mark.parametrize("fast_data", [False, True])
def test_seed_loop_resumes_bit_identical_from_its_state(tmp_path, fast_data):
    images = torch.rand(20, 1, 32, 32) * 2 - 1  # batches of 8: a pass is 3 steps, the last ragged
    G, D = seed_models("upconv32", seed=0)
    whole = seed_loop(G, D, images, steps=7, batch_size=8, seed=0, fast_data=fast_data)
    state = tmp_path / "state.pt"
    G1, D1 = seed_models("upconv32", seed=0)
    seed_loop(G1, D1, images, steps=4, batch_size=8, seed=0, fast_data=fast_data, state_path=state)  # saved at 3
    logged = []
    G2, D2 = seed_models("upconv32", seed=0)
    resumed = seed_loop(G2, D2, images, steps=7, batch_size=8, seed=0, fast_data=fast_data, state_path=state,
                        log=logged.append)
    assert logged == [f"resumed from {state} at step 3"]
    assert resumed["steps"] == 7 and resumed["d_loss"] == whole["d_loss"] and resumed["g_loss"] == whole["g_loss"]
    for a, b in zip([*G.state_dict().values(), *D.state_dict().values()],
                    [*G2.state_dict().values(), *D2.state_dict().values()]):
        assert torch.equal(a, b)


def test_seed_loop_refuses_the_state_of_another_run(tmp_path):
    images = torch.rand(20, 1, 32, 32) * 2 - 1
    state = tmp_path / "state.pt"
    seed_loop(*seed_models("upconv32", seed=0), images, steps=4, batch_size=8, seed=0, state_path=state)
    with pytest.raises(ValueError, match=r"belongs to another run \(it differs in seed \(was 0\)\)"):
        seed_loop(*seed_models("upconv32", seed=1), images, steps=7, batch_size=8, seed=1, state_path=state)
    with pytest.raises(ValueError, match=r"belongs to another run \(it differs in the training data\)"):
        seed_loop(*seed_models("upconv32", seed=0), images.flip(0), steps=7, batch_size=8, seed=0, state_path=state)
    with pytest.raises(ValueError, match="state.pt is at step 3, past the 2 steps asked for; ask for at least 24 images"):
        seed_loop(*seed_models("upconv32", seed=0), images, steps=2, batch_size=8, seed=0, state_path=state)
    torch.save({"format": "something else"}, state)  # a whole torch file, but not a state
    with pytest.raises(ValueError, match="state.pt: not a baseline state file"):
        seed_loop(*seed_models("upconv32", seed=0), images, steps=7, batch_size=8, seed=0, state_path=state)
    torch.save({"format": "ganserve-baseline-state", "G": torch.nn.Linear(1, 1)}, state)  # a pickled module
    with pytest.raises(ValueError, match="refused: it holds pickled objects other than tensors"):
        seed_loop(*seed_models("upconv32", seed=0), images, steps=7, batch_size=8, seed=0, state_path=state)
    state.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="state.pt: truncated, corrupt or not a baseline state"):
        seed_loop(*seed_models("upconv32", seed=0), images, steps=7, batch_size=8, seed=0, state_path=state)


def test_baseline_command_needs_resume_to_reuse_an_out_folder(tmp_path, monkeypatch, capsys):
    from ganserve.training import baseline

    monkeypatch.setattr("sys.argv", ["baseline", "--images", "63", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        baseline.main()
    assert exit_info.value.code == 2 and "--images must be at least one batch of 64, got 63" in capsys.readouterr().err
    (tmp_path / "state.pt").write_bytes(b"")
    monkeypatch.setattr("sys.argv", ["baseline", "--images", "64", "--out", str(tmp_path), "--data", "digits"])
    with pytest.raises(SystemExit) as exit_info:
        baseline.main()
    assert exit_info.value.code == 2 and "state.pt exists: add --resume" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["baseline", "--images", "64", "--out", str(tmp_path / "new"), "--resume"])
    with pytest.raises(SystemExit) as exit_info:
        baseline.main()
    assert exit_info.value.code == 2 and "--resume: no" in capsys.readouterr().err


def test_seed_models_with_dcgan_init_initialise_every_layer_as_ganserve():
    G, _ = seed_models("upconv32", seed=0, init="dcgan")
    projection = G.layers[0]
    assert abs(projection.weight.std().item() - 0.02) < 0.001 and not projection.bias.any()
    with pytest.raises(ValueError, match="unknown init 'xavier'; choose one of script, dcgan"):
        seed_models("upconv32", init="xavier")


def test_a_state_is_refused_by_a_run_with_another_init(tmp_path):
    images = torch.rand(20, 1, 32, 32) * 2 - 1
    state = tmp_path / "state.pt"
    seed_loop(*seed_models("upconv32"), images, steps=4, batch_size=8, state_path=state, run_info={"init": "script"})
    with pytest.raises(ValueError, match=r"it differs in init \(was 'script'\)"):
        seed_loop(*seed_models("upconv32", init="dcgan"), images, steps=7, batch_size=8, state_path=state,
                  run_info={"init": "dcgan"})
