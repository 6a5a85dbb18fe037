"""`ganserve export`: verified ONNX (FP32, FP16) of every preset, from model directories and checkpoints."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import random_weights

import ganserve
from ganserve.cli import main
from ganserve.model_io import (ONNX_FP16_NAME, ONNX_NAME, WEIGHTS_NAME, load_model, save_model, update_metadata,
                               weights_file)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from ganserve.export import export as export_module  # noqa: E402
from ganserve.export.export import ExportOptions, VerificationError, export  # noqa: E402


def _model_dir(tmp_path, preset, **kwargs):
    config = ganserve.create_config(preset, **kwargs)
    return save_model(tmp_path / preset, config, random_weights(config, seed=7))


@pytest.mark.parametrize("preset", ganserve.list_presets())
def test_every_preset_exports_and_verifies(tmp_path, preset):
    src = _model_dir(tmp_path, preset, width=8 if preset != "mlp28" else 16)
    messages = []
    out = export(src, tmp_path / "out", ExportOptions(fp16=True), log=messages.append)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generator.fp16.onnx", "generator.onnx",
                                                     "generator.safetensors"]
    assert any("verified onnxruntime fp32" in m for m in messages)
    assert any("verified onnxruntime fp16" in m for m in messages)
    model = load_model(out)
    for name, tol in ((ONNX_NAME, 1e-4), (ONNX_FP16_NAME, 3e-2)):
        sess = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        for batch in (1, 5, 33):  # the batch axis is dynamic
            z = ganserve.latents.make_latents(batch, model.config.latent_dim, seed=batch)
            want = ganserve.Generator(model, ganserve.backends.create_backend("numpy", model)).generate(z)
            got = sess.run(None, {"z": z})[0]
            assert got.shape == want.shape and np.abs(got - want).max() <= tol


def test_graph_facts(tmp_path):
    out = export(_model_dir(tmp_path, "dcgan28", width=8), tmp_path / "out", ExportOptions(fp16=True, opset=18),
                 log=lambda _: None)
    model = load_model(out)
    graph = onnx.load(str(out / ONNX_NAME))
    assert graph.opset_import[0].version == 18
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == model.config.latent_dim
    assert not any(n.op_type == "BatchNormalization" for n in graph.graph.node)  # folded
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["ganserve_version"] == ganserve.__version__
    assert props["config_sha256"] == model.config.digest()
    assert props["weights_sha256"] == model.weights_sha256
    assert props["latent_dim"] == str(model.config.latent_dim)
    assert props["output_layout"] == "NCHW" and props["value_range"] == "-1.0,1.0"
    fp16 = onnx.load(str(out / ONNX_FP16_NAME))
    inits = {i.data_type for i in fp16.graph.initializer if len(i.dims) > 1}
    assert inits == {onnx.TensorProto.FLOAT16}
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_a_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", 0.0)  # an impossible bound: verification must fail
    with pytest.raises(VerificationError, match="differs from the NumPy reference"):
        export(_model_dir(tmp_path, "mlp28", width=8), tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["mlp28"]  # no staging folder left behind
    src = tmp_path / "mlp28"
    before = sorted(p.name for p in src.iterdir())
    with pytest.raises(VerificationError):  # in place: the existing directory is left as it was
        export(src, src, log=lambda _: None)
    assert sorted(p.name for p in src.iterdir()) == before


def test_reexport_removes_only_exports_of_other_weights(tmp_path):
    src = _model_dir(tmp_path, "mlp28", width=8)
    export(src, src, ExportOptions(fp16=True), log=lambda _: None)
    assert (src / ONNX_FP16_NAME).exists()
    export(src, src, ExportOptions(onnx=False), log=lambda _: None)  # the same model: its graphs still match it
    assert (src / ONNX_NAME).exists() and (src / ONNX_FP16_NAME).exists()
    config = load_model(src).config
    other, messages = save_model(tmp_path / "other", config, random_weights(config, seed=8)), []
    export(other, src, ExportOptions(onnx=False), log=messages.append)
    assert not (src / ONNX_NAME).exists() and not (src / ONNX_FP16_NAME).exists()
    assert f"removed {src / ONNX_NAME}: it was exported from other weights" in messages
    assert load_model(src).model_hash == load_model(other).model_hash


def test_a_new_fp16_graph_of_the_same_weights_removes_the_engine(tmp_path):
    """An engine is checked against the FP16 graph it was built from: a re-export that writes another
    graph (here another opset) of the same weights removes it; one that writes the same graph keeps it."""
    from ganserve.export.tensorrt_engine import write_engine
    from ganserve.model_io import ENGINE_NAME

    src = _model_dir(tmp_path, "mlp28", width=8)
    export(src, src, ExportOptions(fp16=True), log=lambda _: None)
    header = {"format_version": 1, "tensorrt_version": "10.3.0", "compute_capability": "9.0", "gpu_name": "H100",
              "onnx_sha256": hashlib.sha256((src / ONNX_FP16_NAME).read_bytes()).hexdigest(), "min_batch": 1,
              "opt_batch": 64, "max_batch": 1024, "precision": "fp16", "ganserve_version": ganserve.__version__,
              "config_sha256": load_model(src).config.digest()}
    write_engine(src / ENGINE_NAME, header, b"plan")  # as `--tensorrt` on a GPU would have left it
    export(src, src, ExportOptions(fp16=True), log=lambda _: None)
    assert (src / ENGINE_NAME).exists()
    messages = []
    (src / ONNX_FP16_NAME).unlink()  # the engine records its graph's hash: it needs no copy of the graph
    export(src, src, ExportOptions(fp16=True), log=lambda _: None)
    assert (src / ENGINE_NAME).exists()
    export(src, src, ExportOptions(fp16=True, opset=18), log=messages.append)
    assert not (src / ENGINE_NAME).exists()
    assert f"removed {src / ENGINE_NAME}: it was built from another {ONNX_FP16_NAME}" in messages


def test_onnx_ir_version_follows_the_opset(tmp_path):
    """IR 9 (readable by older ONNX Runtime releases) up to opset 20; opset 21 needs IR 10 (the ONNX
    spec's table); each graph checks and runs."""
    src = _model_dir(tmp_path, "mlp28", width=8)
    z = np.zeros((2, 100), np.float32)
    for opset, ir_version in ((17, 9), (20, 9), (21, 10)):
        export(src, tmp_path / str(opset), ExportOptions(opset=opset, verify=False), log=lambda _: None)
        path = str(tmp_path / str(opset) / ONNX_NAME)
        graph = onnx.load(path)
        onnx.checker.check_model(graph, full_check=True)
        assert (graph.opset_import[0].version, graph.ir_version) == (opset, ir_version)
        (out,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"z": z})
        assert out.shape == (2, 1, 28, 28)


def test_weights_that_overflow_fp16_are_refused(tmp_path):
    src = _model_dir(tmp_path, "mlp28", width=8)
    model = load_model(src)
    weights = dict(model.weights)
    name = next(k for k in weights if k.endswith("weight") and weights[k].ndim > 1)
    weights[name] = weights[name] * 1e6
    big = save_model(tmp_path / "big", model.config, weights)
    with pytest.raises(ValueError, match=r"the weight of the exported graph's layer \d+ of \d+ \(\w+, .*\) reaches "
                                         r"magnitude [0-9.e+]+, beyond float16's largest 65504; export without --fp16"):
        export(big, tmp_path / "o", ExportOptions(fp16=True, verify=False), log=lambda _: None)
    assert not (tmp_path / "o").exists()
    export(big, tmp_path / "o", ExportOptions(verify=False), log=lambda _: None)  # FP32 holds them


def test_batch_options_are_checked_where_they_matter(tmp_path, capsys, tiny_model_dir):
    """Without --tensorrt only --max-batch (Triton's batch limit) counts; with it, Triton needs an
    engine that takes batches of 1, refused before a build, not after."""
    base = ["export", "--ckpt", str(tiny_model_dir), "--no-verify"]
    assert main(base + ["--out", str(tmp_path / "a"), "--triton", str(tmp_path / "repo"), "--max-batch", "32"]) == 0
    assert "max_batch_size: 32" in (tmp_path / "repo" / "ganserve_generator" / "config.pbtxt").read_text()
    assert main(base + ["--out", str(tmp_path / "b"), "--max-batch", "0"]) == 1
    assert "--max-batch must be at least 1, got 0" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "c"), "--triton", str(tmp_path / "r2"), "--tensorrt",
                        "--min-batch", "2"]) == 1
    assert "use --min-batch 1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists() and not (tmp_path / "r2").exists()


def test_raw_weights_are_a_checkpoints_choice(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="--weights raw picks weights in a training checkpoint; .* is a model dir"):
        export(tiny_model_dir, tmp_path / "o", ExportOptions(weights="raw"))
    assert not (tmp_path / "o").exists()


def test_onnxruntime_backend_refuses_a_stale_graph(tmp_path):
    src = _model_dir(tmp_path, "mlp28", width=8)
    export(src, src, log=lambda _: None)
    model = load_model(src)
    weights = {k: v + 0.01 for k, v in model.weights.items()}
    data = weights_file(weights)
    (src / WEIGHTS_NAME).write_bytes(data)  # new weights copied in beside the old graph, config.json told
    update_metadata(src, weights_sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ganserve.ModelFormatError, match="exported from different weights"):
        ganserve.Generator.load(src, backend="onnxruntime")


def test_cli_opset_error(tmp_path, capsys, tiny_model_dir):
    code = main(["export", "--ckpt", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--opset", "99"])
    err = capsys.readouterr().err
    assert code == 1 and "--opset 99" in err and not (tmp_path / "o").exists()


def test_a_failed_export_removes_the_folders_it_made(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "a_file").write_text("")
    code = main(["export", "--ckpt", str(tiny_model_dir), "--out", str(tmp_path / "new" / "a" / "b"),
                 "--triton", str(tmp_path / "a_file" / "repo"), "--no-verify"])
    assert code == 1 and "a_file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_cli_tensorrt_without_tensorrt(tmp_path, capsys, tiny_model_dir):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed")
    except ImportError:
        pass
    code = main(["export", "--ckpt", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--tensorrt"])
    err = capsys.readouterr().err
    assert code == 1 and "--tensorrt" in err and "tensorrt" in err and not (tmp_path / "o").exists()


def _no_work(*args, **kwargs):
    raise AssertionError("the export went on to write a graph")


def test_cli_triton_versions(tmp_path, capsys, monkeypatch, tiny_model_dir):
    repo = tmp_path / "repo"
    args = ["export", "--ckpt", str(tiny_model_dir), "--triton", str(repo), "--no-verify"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 1  # version 1 is taken: refused before any work
    assert "--triton-overwrite" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(args + ["--out", str(tmp_path / "b"), "--triton-version", "2"]) == 0
    assert main(args + ["--out", str(tmp_path / "c"), "--triton-overwrite"]) == 0
    assert sorted(p.name for p in (repo / "ganserve_generator").iterdir()) == ["1", "2", "config.pbtxt"]
    # a version whose config.pbtxt would differ from the one 1 and 2 share: refused before any work
    monkeypatch.setattr(export_module, "write_onnx", _no_work)
    assert main(args + ["--out", str(tmp_path / "d"), "--triton-version", "3", "--max-batch", "32"]) == 1
    err = capsys.readouterr().err
    assert "(max_batch_size differ), and versions 1, 2 of" in err and not (tmp_path / "d").exists()


def test_a_failed_triton_write_leaves_nothing(tmp_path, capsys, tiny_model_dir):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the repository's parent folder should be")  # fails even as root
    repo = str(blocker / "repo")
    args = ["export", "--ckpt", str(tiny_model_dir), "--no-verify", "--triton", repo]
    assert main(args + ["--out", str(tmp_path / "new")]) == 1
    assert "Not a directory" in capsys.readouterr().err and not (tmp_path / "new").exists()
    out = export(tiny_model_dir, tmp_path / "old", ExportOptions(onnx=False), log=lambda _: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(NotADirectoryError):
        export(tiny_model_dir, out, ExportOptions(verify=False, triton=repo), log=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no generator.onnx, no staging folder


def test_the_log_names_only_the_files_written(tmp_path, tiny_model_dir):
    out = tmp_path / "samples"
    out.mkdir()
    for i in range(4):
        (out / f"{i:08d}.png").write_bytes(b"png")
    messages = []
    export(tiny_model_dir, out, ExportOptions(verify=False), log=messages.append)
    assert f"wrote config.json, generator.onnx, generator.safetensors to {out}" in messages
    assert not any("png" in m for m in messages)


def test_a_training_run_folder_gets_a_hint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "last.pt").write_bytes(b"")
    assert main(["export", "--ckpt", str(run), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"pass {run / 'last.pt'} (a checkpoint) or {run / 'model'} (the exported model)" in err
    (run / "last.pt").unlink()
    (run / "model").rmdir()
    assert main(["export", "--ckpt", str(run), "--out", str(tmp_path / "o")]) == 1
    assert "config.json" in (err := capsys.readouterr().err) and "training run" not in err  # an empty folder


def test_triton_needs_an_onnx_graph_or_engine(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="--no-onnx"):
        export(tiny_model_dir, tmp_path / "o", ExportOptions(onnx=False, triton=str(tmp_path / "repo")))
    assert not (tmp_path / "o").exists() and not (tmp_path / "repo").exists()
