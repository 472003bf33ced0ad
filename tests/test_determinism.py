"""deterministic(): switches set and undone, the report, import order, metadata and restore."""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Iterator

import pytest
import torch

import rngstate
from rngstate import determinism
from rngstate.errors import RNGStateWarning
from tests.backends.fake_cuda import FakeCuda
from tests.conftest import run_python

CUBLAS = "CUBLAS_WORKSPACE_CONFIG"


def torch_switches() -> tuple[object, ...]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.mkldnn.deterministic,
        os.environ.get(CUBLAS),
    )


@pytest.fixture(autouse=True)
def leave_switches_as_found() -> Iterator[None]:
    """Every test leaves torch's switches, the environment and rngstate's memory as it found them."""
    before = torch_switches()
    yield
    determinism.deterministic(False)
    torch.use_deterministic_algorithms(bool(before[0]), warn_only=bool(before[1]))
    torch.backends.cudnn.deterministic = bool(before[2])
    torch.backends.cudnn.benchmark = bool(before[3])
    torch.backends.mkldnn.deterministic = bool(before[4])
    if before[5] is None:
        os.environ.pop(CUBLAS, None)
    else:
        os.environ[CUBLAS] = str(before[5])
    assert torch_switches() == before


def test_sets_every_torch_switch_and_reports_it() -> None:
    os.environ.pop(CUBLAS, None)
    report = rngstate.deterministic(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.backends.mkldnn.deterministic
    assert os.environ[CUBLAS] == ":4096:8"
    assert report.applied == {
        "torch.use_deterministic_algorithms": "on",
        "torch.backends.cudnn.deterministic": "on",
        "torch.backends.cudnn.benchmark": "off",
        "torch.backends.mkldnn.deterministic": "on",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    assert report and not report.not_applied and "torch" in report.frameworks
    text = str(report)
    assert text.startswith("rngstate.deterministic(True): 5 set, 0 not set")
    # column widths follow the longest switch name, which depends on what else is imported
    assert re.search(r"^  set +torch\.use_deterministic_algorithms += on$", text, re.MULTILINE)


def test_false_puts_back_the_values_from_before() -> None:
    torch.backends.cudnn.benchmark = True
    os.environ[CUBLAS] = ":16:8"  # already deterministic: kept, not replaced
    rngstate.deterministic(True)
    rngstate.deterministic(True, warn_only=True)  # a second call must not forget the originals
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.backends.cudnn.benchmark and os.environ[CUBLAS] == ":16:8"
    report = rngstate.deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is True
    assert os.environ[CUBLAS] == ":16:8"
    assert report.applied["torch.backends.cudnn.benchmark"] == "on"
    assert not determinism.is_enabled()


def test_cublas_variable_removed_on_undo_only_if_rngstate_set_it() -> None:
    os.environ.pop(CUBLAS, None)
    rngstate.deterministic(True)
    rngstate.deterministic(False)
    assert CUBLAS not in os.environ
    os.environ[CUBLAS] = ":0:0"
    rngstate.deterministic(False)  # never enabled: the user's own variable stays
    assert os.environ[CUBLAS] == ":0:0"


def test_false_without_true_turns_switches_off() -> None:
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    report = rngstate.deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert report.applied["torch.use_deterministic_algorithms"] == "off"


def test_warn_only() -> None:
    report = rngstate.deterministic(warn_only=True)
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert report.applied["torch.use_deterministic_algorithms"] == "warn_only"
    assert "warn_only=True" in str(report)


def test_cublas_after_cuda_initialized_is_reported_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    os.environ.pop(CUBLAS, None)
    FakeCuda(1).install(monkeypatch.setattr)
    torch.cuda.init()  # torch's own lazy init, only its C++ entry points faked
    with pytest.warns(RNGStateWarning, match="cuBLAS matmuls cannot be deterministic.*warn_only"):
        report = rngstate.deterministic(True)
    assert CUBLAS not in os.environ
    assert not report
    assert "before CUDA initializes" in report.not_applied[CUBLAS]
    assert "rngstate run --deterministic" in report.not_applied[CUBLAS]
    assert "NOT SET  CUBLAS_WORKSPACE_CONFIG" in str(report)
    # The first cuBLAS matmul would raise under use_deterministic_algorithms(True): warn_only.
    assert report.applied["torch.use_deterministic_algorithms"] == "warn_only"
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic  # the other switches are still set


def test_cuda_started_with_deterministic_cublas_stays_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CUBLAS, ":16:8")
    FakeCuda(1).install(monkeypatch.setattr)
    torch.cuda.init()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RNGStateWarning)
        report = rngstate.deterministic(True)
    assert report and report.applied["torch.use_deterministic_algorithms"] == "on"
    assert report.applied[CUBLAS] == ":16:8"


def test_report_is_frozen() -> None:
    report = rngstate.deterministic(True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.enabled = False  # type: ignore[misc]


def test_a_failing_switch_is_reported_and_the_rest_still_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(mode: bool, *, warn_only: bool = False) -> None:
        raise RuntimeError("not today")

    monkeypatch.setattr(torch, "use_deterministic_algorithms", refuse)
    report = rngstate.deterministic(True)
    assert report.not_applied["torch.use_deterministic_algorithms"] == "RuntimeError: not today"
    assert torch.backends.cudnn.deterministic


def test_seed_everything_deterministic_calls_it() -> None:
    rngstate.seed_everything(3, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() and determinism.is_enabled()


def test_capture_records_settings_and_restore_warns_when_they_differ() -> None:
    rngstate.seed_everything(1)
    rngstate.deterministic(True)
    state = rngstate.capture()
    assert state.metadata["determinism"]["torch.use_deterministic_algorithms"] == "on"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rngstate.restore(state)  # same settings: silent
    rngstate.deterministic(False)
    with pytest.warns(
        RNGStateWarning, match="torch.use_deterministic_algorithms was on at capture, is off now"
    ) as caught:
        rngstate.restore(state)
    assert caught[0].filename == __file__  # points at the caller of restore
    # The state still round-trips through a file with the settings in it.
    assert (
        rngstate.RNGState.from_dict(state.to_dict()).metadata["determinism"] == state.metadata["determinism"]
    )


def test_differences_ignore_unknown_and_malformed_records() -> None:
    assert determinism.differences(None) == []
    assert determinism.differences("on") == []
    assert determinism.differences({"someframework.switch": "on"}) == []
    live = determinism.settings()["torch.backends.cudnn.deterministic"]
    other = "on" if live == "off" else "off"
    assert determinism.differences({"torch.backends.cudnn.deterministic": other}) == [
        f"torch.backends.cudnn.deterministic was {other} at capture, is {live} now"
    ]


def test_report_without_frameworks_and_plain_dict() -> None:
    code = """
    import sys, rngstate
    report = rngstate.deterministic(True)
    print(report.frameworks, report.applied, bool(report))
    print(str(report).splitlines()[1].strip())
    print(report.to_dict()["enabled"], sorted({"torch", "tensorflow", "paddle"} & set(sys.modules)))
    """
    lines = run_python(code).splitlines()
    assert lines == [
        "() {} True",
        "no framework with determinism switches is imported (python and numpy need none)",
        "True []",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("seed_first", [True, False])
def test_framework_imported_later_is_switched_at_import(seed_first: bool) -> None:
    # Both import hooks (seeding and determinism) wrap the same loader; either order must work.
    calls = ["rngstate.seed_everything(5)", "rngstate.deterministic(True)"]
    code = f"""
    import os, rngstate
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    {calls[0] if seed_first else calls[1]}
    {calls[1] if seed_first else calls[0]}
    import torch
    print(torch.initial_seed(), torch.are_deterministic_algorithms_enabled(),
          os.environ["CUBLAS_WORKSPACE_CONFIG"])
    rngstate.deterministic(False)
    print(torch.are_deterministic_algorithms_enabled(), "CUBLAS_WORKSPACE_CONFIG" in os.environ)
    """
    assert run_python(code).split() == ["5", "True", ":4096:8", "False", "False"]


@pytest.mark.slow
def test_tensorflow_and_paddle_switches() -> None:
    code = """
    import rngstate
    import paddle
    report = rngstate.deterministic(True)   # paddle imported before, tensorflow after
    import tensorflow as tf
    from tensorflow.python.framework import config
    print("tf", config.is_op_determinism_enabled())
    flag = "paddle.FLAGS_cudnn_deterministic"
    print("paddle", flag in report.applied or flag in report.unavailable)
    print("cpu-reason", "built without CUDA" in report.unavailable.get(flag, "built without CUDA"))
    print("settings", rngstate.determinism.settings()["tensorflow.op_determinism"])
    off = rngstate.deterministic(False)
    print("undo", config.is_op_determinism_enabled(), off.applied["tensorflow.op_determinism"])
    """
    out = run_python(code, env={"TF_CPP_MIN_LOG_LEVEL": "3"}).split("\n")
    assert [line for line in out if line] == [
        "tf True",
        "paddle True",
        "cpu-reason True",
        "settings on",
        "undo False off",
    ]
