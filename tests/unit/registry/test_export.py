"""The Triton entry: config variants (pbtxt and the JSON of a serving bundle), the I/O contract
check, atomic idempotent export, and model.py's batching run against a stand-in for Triton's
python backend utilities."""

from __future__ import annotations

import io
import json
import sys
import types
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from google.protobuf import json_format, text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from libs.errors import FailedPrecondition, InvalidArgument
from services.registry.artifacts import FileArtifactStore
from services.registry.core import signature_of
from services.registry.domain import SYSTEM, ModelVersion, Signature, VersionStatus
from services.registry.export import (
    MODEL_PY,
    TritonExporter,
    render_config,
    validate_torchscript,
)
from tests.unit.registry.helpers import AUTO, torchscript_model, usecases

UC = usecases()[AUTO]
SIG = signature_of(UC)


def test_config_variants_carry_the_contract() -> None:
    cpu = render_config("loan", SIG, use_case=AUTO, max_batch_size=64)
    gpu = render_config("loan", SIG, use_case=AUTO, kind="gpu")
    for text in (cpu, gpu):
        assert 'backend: "python"' in text and "dynamic_batching" in text
        assert f'name: "INPUT" data_type: TYPE_FP32 dims: [ {len(UC.model_inputs())} ]' in text
        assert 'name: "OUTPUT" data_type: TYPE_FP32 dims: [ 2 ]' in text
    assert "max_batch_size: 64" in cpu and "kind: KIND_CPU" in cpu and "KIND_GPU" not in cpu
    assert "kind: KIND_GPU" in gpu and '"FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" }' in gpu
    # The input names travel as an escaped JSON list a client can read back.
    line = next(x for x in cpu.splitlines() if '"input_names"' in x)
    raw = line.split("string_value: ", 1)[1].rsplit(" }", 2)[0]
    assert json.loads(json.loads(raw)) == UC.model_inputs()


def scripted(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


class Logits(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] + 3.0


class Wide(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x[:, :3], dim=1)


def test_the_contract_check_accepts_a_good_model_and_names_what_is_wrong() -> None:
    validate_torchscript(torchscript_model(UC), SIG)
    for content, words in (
        (b"not torchscript", "TorchScript"),
        (scripted(Logits()), "probabilities"),
        (scripted(Wide()), "[batch, 2]"),
    ):
        with pytest.raises(InvalidArgument, match=words) as info:
            validate_torchscript(content, SIG)
        assert info.value.field == "artifact_content"
    narrow = Signature(("a",), ("y",), "regression")
    with pytest.raises(InvalidArgument, match="forward on float32"):
        validate_torchscript(torchscript_model(UC), narrow)


def version(sha: str, number: int = 1) -> ModelVersion:
    return ModelVersion(AUTO, "loan", number, VersionStatus.APPROVED, sha, SIG, datetime.now(UTC), SYSTEM)


def test_export_writes_the_entry_once_and_repairs_a_damaged_one(tmp_path: Path) -> None:
    artifacts = FileArtifactStore(tmp_path / "cas")
    content = torchscript_model(UC)
    sha = artifacts.put(content).sha256
    exporter = TritonExporter(tmp_path / "repo", artifacts, instance_kind="gpu", max_batch_size=32)
    first = exporter.export(version(sha), lineage={"version": 1})
    model_dir = tmp_path / "repo" / "loan"
    assert first.written and first.version_dir == model_dir / "1"
    assert (model_dir / "1" / "model.pt").read_bytes() == content
    assert (model_dir / "1" / "model.py").read_text() == MODEL_PY
    assert json.loads((model_dir / "1" / "lineage.json").read_text()) == {"version": 1}
    assert (model_dir / "config.pbtxt").read_text() == (model_dir / "config.gpu.pbtxt").read_text()
    assert "KIND_CPU" in (model_dir / "config.cpu.pbtxt").read_text()
    assert not exporter.export(version(sha)).written
    (model_dir / "1" / "model.pt").write_bytes(b"damaged")
    assert not exporter.is_exported(version(sha))
    assert exporter.export(version(sha)).written
    assert (model_dir / "1" / "model.pt").read_bytes() == content
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "1",
        "config.cpu.pbtxt",
        "config.gpu.pbtxt",
        "config.pbtxt",
    ]


def test_a_bundle_carries_the_config_as_json_and_its_files_as_stored_blobs(tmp_path: Path) -> None:
    artifacts = FileArtifactStore(tmp_path / "cas")
    content = torchscript_model(UC)
    sha = artifacts.put(content).sha256
    exporter = TritonExporter(tmp_path / "exports", artifacts, max_batch_size=32, cpu_threads=2)
    bundle = exporter.bundle(version(sha, 3))
    assert (bundle.model_name, bundle.version) == ("loan", 3)
    # The JSON and the pbtxt an export writes are the same Triton ModelConfig: one contract.
    for kind in ("cpu", "gpu"):
        as_json = json_format.ParseDict(exporter.bundle(version(sha, 3), kind).config, ModelConfig())
        as_text = text_format.Parse(exporter.config(version(sha, 3), kind), ModelConfig())
        assert as_json == as_text
    assert bundle.config["max_batch_size"] == 32
    assert bundle.config["input"][0]["dims"] == [len(UC.model_inputs())]
    assert bundle.config["parameters"]["torch_num_threads"] == {"string_value": "2"}
    assert json.loads(bundle.config["parameters"]["input_names"]["string_value"]) == UC.model_inputs()
    files = {f.path: f for f in bundle.files}
    assert artifacts.read(files["model.py"].sha256) == MODEL_PY.encode()
    assert (files["model.pt"].sha256, files["model.pt"].size) == (sha, len(content))
    assert exporter.bundle(version(sha, 3), "gpu").config["instance_group"] == [
        {"count": 1, "kind": "KIND_GPU"}
    ]
    assert not (tmp_path / "exports").exists()


class _Tensor:
    def __init__(self, name: str, value: torch.Tensor) -> None:
        self.name, self.value = name, value

    def to_dlpack(self) -> Any:
        return torch.to_dlpack(self.value)

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> _Tensor:
        return _Tensor(name, torch.from_dlpack(capsule))


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: Any = None) -> None:
        self.output_tensors, self.error = output_tensors, error


def fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = _Response  # type: ignore[attr-defined]
    module.TritonError = str  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request[name]  # type: ignore[attr-defined]
    return module


def test_model_py_runs_the_requests_of_a_batch_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = torchscript_model(UC, seed=3)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.pt").write_bytes(content)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    namespace: dict[str, Any] = {}
    exec(compile(MODEL_PY, "model.py", "exec"), namespace)  # noqa: S102 - the generated file under test
    threads = torch.get_num_threads()
    model = namespace["TritonPythonModel"]()
    config = {"parameters": {"device": {"string_value": "cpu"}, "torch_num_threads": {"string_value": "1"}}}
    try:
        model.initialize(
            {
                "model_config": json.dumps(config),
                "model_instance_kind": "CPU",
                "model_repository": str(tmp_path),
                "model_version": "1",
            }
        )
    finally:
        torch.set_num_threads(threads)
    n = len(UC.model_inputs())
    a, b = torch.rand(3, n) * 100, torch.rand(1, n) * 100
    b[0, 4] = float("nan")
    responses = model.execute([{"INPUT": _Tensor("INPUT", a)}, {"INPUT": _Tensor("INPUT", b)}])
    reference = torch.jit.load(io.BytesIO(content))
    with torch.inference_mode():
        want = reference(torch.cat([a, b]))
    got = torch.cat([r.output_tensors[0].value for r in responses])
    assert [r.output_tensors[0].value.shape[0] for r in responses] == [3, 1]
    assert torch.allclose(got, want) and bool(torch.isfinite(got).all())
    broken = model.execute([{"INPUT": _Tensor("INPUT", torch.rand(2, n + 1))}])
    assert broken[0].error and not broken[0].output_tensors


@pytest.mark.parametrize("status", [s for s in VersionStatus if s is not VersionStatus.APPROVED])
def test_the_exporter_never_makes_a_version_loadable_unless_approved(
    tmp_path: Path, status: VersionStatus
) -> None:
    artifacts = FileArtifactStore(tmp_path / "cas")
    sha = artifacts.put(torchscript_model(UC)).sha256
    exporter = TritonExporter(tmp_path / "repo", artifacts)
    unservable = replace(version(sha), status=status)
    with pytest.raises(FailedPrecondition, match="only an approved version"):
        exporter.bundle(unservable)
    with pytest.raises(FailedPrecondition, match="only an approved version"):
        exporter.export(unservable)
    assert not (tmp_path / "repo").exists()
