"""fingerprint(), audit() and check_reproducible()."""

from __future__ import annotations

import itertools
import os
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.backends.objects import generator_state, set_generator_state
from rngstate.diagnostics import (
    DiagnosticsError,
    NotReproducibleError,
    UncomparableOutputError,
    check_reproducible,
    untracked_generators,
    warn_untracked_generators,
)
from rngstate.errors import InvalidSeedError, RNGStateWarning, ScopeError
from tests.conftest import run_python

# -- fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_short_stable_and_tracks_every_draw(tmp_path: Path) -> None:
    rngstate.seed_everything(7)
    first = rngstate.fingerprint()
    assert len(first) == 12 and int(first, 16) >= 0
    assert rngstate.fingerprint() == first  # looking does not advance anything
    rngstate.seed_everything(7)
    assert rngstate.fingerprint() == first
    np.random.rand()
    after_numpy = rngstate.fingerprint()
    assert after_numpy != first
    with rngstate.rng_scope("encoder"):  # a substream's state is part of it too
        pass
    assert rngstate.fingerprint() not in (first, after_numpy)
    state = rngstate.save(tmp_path / "s.rngstate")
    assert rngstate.fingerprint(rngstate.load(tmp_path / "s.rngstate")) == rngstate.fingerprint(state)


def test_fingerprint_ignores_metadata() -> None:
    rngstate.seed_everything(7)
    before = rngstate.fingerprint()
    try:
        rngstate.deterministic(True)
        assert rngstate.fingerprint() == before
    finally:
        rngstate.deterministic(False)


def test_fingerprint_is_the_same_in_every_process() -> None:
    code = "import rngstate; rngstate.seed_everything(7); print(rngstate.fingerprint())"
    one = run_python(code, env={"PYTHONHASHSEED": "1"})
    two = run_python(code, env={"PYTHONHASHSEED": "2"})
    assert one == two and len(one.strip()) == 12


def test_fingerprint_rejects_other_types() -> None:
    with pytest.raises(DiagnosticsError, match="takes an RNGState"):
        rngstate.fingerprint({"not": "a state"})  # type: ignore[arg-type]


# -- audit ---------------------------------------------------------------------------------------


def test_audit_names_the_streams_that_advanced() -> None:
    rngstate.seed_everything(0)
    with rngstate.audit() as report:
        assert "still running" in str(report)
        np.random.shuffle(np.arange(5))
        torch.rand(2)
    assert report.advanced == ("numpy", "torch.cpu")
    assert "python" in report.unchanged and "numpy" not in report.unchanged
    assert "numpy" in report and "python" not in report
    lines = str(report).splitlines()
    assert lines[0].startswith("rngstate audit: 2 of ")
    assert lines[1] == "  advanced:  numpy, torch.cpu"


def test_audit_nothing_advanced() -> None:
    rngstate.seed_everything(0)
    with rngstate.audit() as report:
        sorted([3, 1, 2])
    assert report.advanced == () and report.substreams == {} and report.finished
    assert "advanced:  -" in str(report)


def test_audit_attributes_draws_to_scopes() -> None:
    rngstate.seed_everything(0)
    with rngstate.rng_scope("data"):
        random.random()
    with rngstate.audit() as report:
        with rngstate.rng_scope("model/encoder"):
            torch.rand(3)
        with rngstate.rng_scope("idle"):  # entered for the first time, nothing drawn
            pass
        with rngstate.rng_scope("data"):  # re-entered, draws again
            np.random.rand()
    assert report.substreams == {"data": ("numpy",), "model/encoder": ("torch.cpu",)}
    assert report.advanced == ("numpy", "torch.cpu")
    assert "in scope 'model/encoder': torch.cpu" in str(report)


def test_audit_inside_an_open_scope() -> None:
    rngstate.seed_everything(0)
    with rngstate.rng_scope("outer"), rngstate.audit() as report:
        random.random()
    assert report.substreams == {"outer": ("python",)} and report.advanced == ("python",)


def test_audit_tracked_generators_and_exceptions() -> None:
    rngstate.seed_everything(0)
    loader = rngstate.torch.generator("loader")
    with pytest.raises(ZeroDivisionError), rngstate.audit() as report:
        torch.randperm(10, generator=loader)
        _ = 1 / 0
    assert report.generators == ("loader",) and report.advanced == ()
    assert "tracked generators advanced: loader" in str(report)


def test_audit_reports_a_framework_imported_inside_the_block() -> None:
    code = """
    import rngstate
    rngstate.seed_everything(0)
    with rngstate.audit() as report:
        import torch
        torch.rand(1)
    print(report.started, report.advanced)
    """
    assert run_python(code).strip() == "('torch.cpu',) ()"


# -- generators rngstate does not track ----------------------------------------------------------


class OwnsGenerators(torch.utils.data.Dataset[float]):
    """The trap: a dataset that creates its own generators in __init__."""

    def __init__(self) -> None:
        self.noise = np.random.default_rng(7)
        self.legacy = np.random.RandomState(7)
        self.flip = random.Random(7)
        self.crop = torch.Generator().manual_seed(7)
        self.pipeline = {"jitter": [np.random.default_rng(8)]}
        self.samples = list(range(5000))  # a long list is searched only so far
        self.samples[-1] = random.Random(9)  # type: ignore[call-overload]
        self.global_ones = [random._inst, np.random.mtrand._rand, torch.default_generator]  # type: ignore[attr-defined]
        self.me = self  # cycles end

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return float(self.noise.normal())


class Slotted:
    __slots__ = ("rng", "unset")

    def __init__(self) -> None:
        self.rng = random.Random(1)


class Hostile:
    def __getattribute__(self, name: str) -> object:
        raise RuntimeError("no attribute access here")


def test_untracked_generators_finds_every_kind_nested() -> None:
    found = untracked_generators(OwnsGenerators())
    assert found == ["noise", "legacy", "flip", "crop", "pipeline['jitter'][0]"]
    assert untracked_generators(Slotted()) == ["rng"]
    assert untracked_generators({"a": {"b": {"c": {"d": random.Random()}}}}) == ["['a']['b']['c']['d']"]
    assert untracked_generators({"a": {"b": {"c": {"d": {"e": random.Random()}}}}}) == []  # too deep
    assert untracked_generators(Hostile()) == []
    assert untracked_generators([1, "x", None, np.zeros(3), torch.zeros(2)]) == []


def test_tracked_generators_do_not_count() -> None:
    rngstate.seed_everything(0)
    dataset = OwnsGenerators()
    dataset.noise = rngstate.track(np.random.default_rng(), "noise")
    dataset.crop = rngstate.torch.generator("crop")
    box = rngstate.track(
        {"rng": random.Random()}, "box",
        get_state=lambda b: generator_state(b["rng"]),
        set_state=lambda b, state: set_generator_state(b["rng"], state),
    )
    dataset.pipeline = {"box": box}  # a tracked object covers the generators inside it
    assert untracked_generators(dataset) == ["legacy", "flip"]


def test_audit_warns_about_a_dataset_that_owns_its_generator() -> None:
    rngstate.seed_everything(0)
    dataset = OwnsGenerators()
    expected = r"OwnsGenerators\) holds random generators .*: noise, legacy"
    with pytest.warns(RNGStateWarning, match=expected) as caught, rngstate.audit(dataset) as report:
        dataset[0]
    assert report.untracked[:2] == ("OwnsGenerators.noise", "OwnsGenerators.legacy")
    assert caught[0].filename == __file__  # the warning points at the `with` line
    assert "untracked generators (break exact resume): OwnsGenerators.noise" in str(report)
    assert report.advanced == ()  # the dataset's own draws are invisible to the streams
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with rngstate.audit([1, 2]) as clean:
            pass
        assert warn_untracked_generators(Slotted.__new__(Slotted)) == []
    with pytest.warns(RNGStateWarning, match=r"the dataset \(Slotted\) holds .*: rng\.") as caught:
        assert warn_untracked_generators(Slotted(), stacklevel=1) == ["rng"]
    assert caught[0].filename == __file__  # stacklevel=1: the line that called it
    assert clean.untracked == () and "untracked" not in str(clean)


# -- check_reproducible --------------------------------------------------------------------------


def training_run() -> dict[str, object]:
    weights = torch.nn.Linear(4, 2).weight.detach()
    losses = [float(torch.rand(1)) + random.random() for _ in range(3)]
    return {"weights": weights, "noise": np.random.rand(2, 3), "losses": losses, "steps": 3}


def test_reproducible_function() -> None:
    report = check_reproducible(training_run, seed=11)
    assert report and report.reproducible and report.difference is None
    # the keys, weights, noise, the losses' length, 3 losses, steps and the final rng state
    assert report.compared == 9
    assert str(report) == "reproducible: seed 11, 2 runs, 9 outputs compared, all identical"
    report.raise_if_different()  # no error


def flaky_after(step: int) -> object:
    calls = itertools.count()

    def run() -> dict[str, list[float]]:
        call = next(calls)
        return {"loss": [random.random() + (call if i == step else 0) for i in range(5)]}

    return run


def test_first_difference_is_named() -> None:
    report = check_reproducible(flaky_after(2), runs=3)  # type: ignore[arg-type]
    assert not report
    assert report.difference is not None
    assert report.difference.path == "output['loss'][2]" and report.difference.run == 2
    assert str(report).startswith(
        "NOT reproducible: seed 0, 3 runs, 8 outputs compared; first difference: "
        "output['loss'][2] differs between run 1 and run 2: "
    )
    with pytest.raises(NotReproducibleError, match=r"output\['loss'\]\[2\]") as caught:
        report.raise_if_different()
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, rngstate.RNGStateError)


def test_arrays_report_the_first_differing_element() -> None:
    calls = itertools.count()

    def run() -> tuple[torch.Tensor, np.ndarray]:
        array = np.zeros((2, 3))
        array[1, 0] = next(calls)
        return torch.ones(2), array

    difference = check_reproducible(run).difference
    assert difference is not None and difference.path == "output[1]"
    assert "1 of 6 elements differ; first at index (1, 0): " in difference.detail
    assert "max |difference| 1" in difference.detail


def test_bit_for_bit_float_rules() -> None:
    signs = itertools.cycle([0.0, -0.0])
    assert not check_reproducible(lambda: next(signs))
    assert not check_reproducible(lambda: np.array([next(signs)]))
    assert check_reproducible(lambda: [float("nan"), np.array([np.nan, 1.0])])


def test_same_outputs_but_different_random_consumption() -> None:
    calls = itertools.count()

    def run() -> int:
        for _ in range(next(calls)):
            random.random()  # the second run draws once more and throws the number away
        return 1

    difference = check_reproducible(run).difference
    assert difference is not None and difference.path == "<rng state after the run>"
    assert "consumed different random numbers" in difference.detail


def test_structure_and_generators() -> None:
    lengths = itertools.count(2)
    difference = check_reproducible(lambda: list(range(next(lengths)))).difference
    assert difference is not None
    assert (difference.path, difference.first, difference.second) == ("output", "length 2", "length 3")

    def steps() -> Iterator[float]:
        for _ in range(3):
            yield random.random()

    assert check_reproducible(steps).compared == 5


def test_callers_state_and_environment_are_put_back() -> None:
    rngstate.seed_everything(5)
    random.random()
    state = rngstate.capture()
    expected = (random.random(), float(torch.rand(1)))
    rngstate.restore(state)
    check_reproducible(training_run, seed=99)
    assert (random.random(), float(torch.rand(1))) == expected
    assert os.environ["RNGSTATE_SEED"] == "5"


def test_bad_arguments() -> None:
    with pytest.raises(UncomparableOutputError, match=r"output\[0\]: cannot compare a builtins.object"):
        check_reproducible(lambda: [object()])
    with pytest.raises(DiagnosticsError, match="runs must be an integer >= 2"):
        check_reproducible(lambda: 1, runs=1)
    with pytest.raises(InvalidSeedError):
        check_reproducible(lambda: 1, seed=-1)
    rngstate.seed_everything(1)
    with rngstate.rng_scope("x"), pytest.raises(ScopeError, match="outside every rng_scope"):
        check_reproducible(lambda: 1)
