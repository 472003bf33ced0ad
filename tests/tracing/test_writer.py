"""rngstate.trace: what a step record holds, appending, per-rank files, one writer per file."""

from __future__ import annotations

import json
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import rngstate
from rngstate.tracing import TraceDataError, TraceError, compare, rank_path, read_trace, records
from rngstate.tracing.digests import batch_digest, weights_digest
from rngstate.tracing.losses import loss_bits
from tests.conftest import run_python


def test_a_step_record_holds_place_streams_batch_loss_and_weights(tmp_path: Path) -> None:
    rngstate.seed_everything(3)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 4)
    with rngstate.rng_scope("aug"):
        np.random.rand()
    with rngstate.trace(tmp_path / "run.trace", weights_every=2) as trace:
        loss = model(x).sum()
        assert trace.step(batch={"x": x, "y": [1, 2]}, loss=loss, model=model, optimizer=optimizer,
                          epoch=0, position=0, phase=1) == 1
        assert trace.step(loss=loss.double(), model=model, optimizer=optimizer) == 2
    first, second = read_trace(tmp_path / "run.trace").steps
    assert (first.step, first.epoch, first.position, first.phase) == (1, 0, 0, 1)
    # Every active backend's stream: these three, plus any framework another test imported.
    from rngstate import backends

    assert {"python", "numpy", "torch.cpu"} <= set(first.streams) <= set(backends.stream_names())
    assert set(first.substreams) == {"aug"}  # the first record lists every substream
    assert second.substreams == {}  # nothing touched since: only the combined digest
    assert first.scopes == second.scopes is not None
    assert first.batch is not None and first.samples is not None and len(first.samples) == 5 * 4
    assert first.loss == ("<f4", loss.detach().numpy().tobytes())
    assert second.loss == ("<f8", loss.double().detach().numpy().tobytes())
    assert first.weights is None and second.weights == weights_digest(model)
    assert second.optimizer == weights_digest(optimizer) and second.batch is None


def test_stream_fingerprints_follow_the_state_not_the_process(tmp_path: Path) -> None:
    code = f"""
    import random, sys, rngstate
    rngstate.seed_everything(5)
    with rngstate.trace(sys.argv[1]) as trace:
        trace.step()
        random.random()
        trace.step()
        rngstate.restore(rngstate.load({str(tmp_path / 's.rngstate')!r}))
        trace.step()
    """
    rngstate.seed_everything(5)
    rngstate.save(tmp_path / "s.rngstate")
    for name in ("a.trace", "b.trace"):
        run_python(code, str(tmp_path / name))
    a, b = (read_trace(tmp_path / name).steps for name in ("a.trace", "b.trace"))
    assert [r.streams for r in a] == [r.streams for r in b]
    assert a[0].streams["python"] != a[1].streams["python"] and a[0].streams == a[2].streams


def test_a_substream_touched_again_is_listed_again(tmp_path: Path) -> None:
    rngstate.seed_everything(1)
    with rngstate.trace(tmp_path / "t.trace") as trace:
        for draw in (False, True, False):
            if draw:
                with rngstate.rng_scope("noise"):
                    random.random()
            trace.step()
    steps = read_trace(tmp_path / "t.trace").steps
    assert [set(r.substreams) for r in steps] == [set(), {"noise"}, set()]
    assert steps[0].scopes != steps[1].scopes == steps[2].scopes


def test_batch_digest_tells_order_from_content() -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 2, 3])
    base = batch_digest((x, y))
    swapped = batch_digest((x[[1, 0, 2, 3]], y[[1, 0, 2, 3]]))
    changed = batch_digest((x + np.float32(1), y))
    rows = [base["samples"][i : i + 4] for i in range(0, 16, 4)]
    assert base["digest"] != swapped["digest"] and sorted(rows) == sorted(
        swapped["samples"][i : i + 4] for i in range(0, 16, 4)
    )
    assert not set(rows) & {changed["samples"][i : i + 4] for i in range(0, 16, 4)}
    assert batch_digest((torch.from_numpy(x), torch.from_numpy(y))) == base  # framework-blind
    assert batch_digest((x, y)) == base
    # -0.0 and 0.0 are different bits; the digest sees bits, not values
    assert batch_digest(np.zeros(2)) != batch_digest(-np.zeros(2))
    with pytest.raises(TraceDataError, match="cannot digest"):
        batch_digest({"x": object()})


def test_loss_bits_are_exact() -> None:
    assert loss_bits(0.1) == {"dtype": "<f8", "bits": struct.pack("<d", 0.1)}
    one = loss_bits(torch.tensor(0.1))
    assert one == {"dtype": "<f4", "bits": struct.pack("<f", 0.1)}
    assert loss_bits(torch.tensor(0.1, dtype=torch.bfloat16))["dtype"] == "<f4"
    assert loss_bits(torch.ones(3))["dtype"] == "digest"


def test_a_resumed_run_continues_the_file_and_replaces_what_it_redoes(tmp_path: Path) -> None:
    path = tmp_path / "run.trace"
    rngstate.seed_everything(0)
    with rngstate.trace(path) as trace:
        for _ in range(5):
            trace.step(loss=float(trace._last or 0))
    with rngstate.trace(path) as trace:  # resumed from a checkpoint at step 3
        assert trace.step(step=4, loss=42.0) == 4
        assert trace.step() == 5
    read = read_trace(path)
    assert [(r.step, r.session, r.resumed) for r in read.steps] == [
        (1, 0, False), (2, 0, False), (3, 0, False), (4, 1, True), (5, 1, False)
    ]
    assert len(read.sessions) == 2 and not read.torn
    with rngstate.trace(path) as trace:  # no step=: goes on after the last record
        assert trace.step() == 6


def test_steps_and_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="weights_every"):
        rngstate.trace(tmp_path / "t.trace", weights_every=-1)
    with rngstate.trace(tmp_path / "t.trace") as trace:
        with pytest.raises(TraceError, match="position must be an integer"):
            trace.step(position=-1)
        with pytest.raises(TraceError, match="step must be"):
            trace.step(step=True)
    with pytest.raises(TraceError, match="is closed"):
        trace.step()


def test_one_writer_per_file(tmp_path: Path) -> None:
    with rngstate.trace(tmp_path / "t.trace"), pytest.raises(TraceError, match="another process is writing"):
        rngstate.trace(tmp_path / "t.trace")


def test_a_torn_last_record_is_dropped_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "t.trace"
    with rngstate.trace(path) as trace:
        trace.step(loss=1.0)
        trace.step(loss=2.0)
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])  # the last record cut short
    assert [r.step for r in read_trace(path).steps] == [1] and read_trace(path).torn
    with rngstate.trace(path) as trace:
        assert trace.step() == 2
    read = read_trace(path)
    assert [r.step for r in read.steps] == [1, 2] and not read.torn


def test_never_overwrites_a_file_that_is_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    with pytest.raises(rngstate.StateFileError, match="not an rngstate trace"):
        rngstate.trace(path)
    assert path.read_text() == "my notes\n"


def test_one_file_per_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert rank_path(tmp_path / "run.trace", 3, 4) == tmp_path / "run.rank3.trace"
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        rngstate.seed_everything(0)
        with rngstate.trace(tmp_path / "run.trace") as trace:
            assert trace.path == tmp_path / f"run.rank{rank}.trace"
            trace.step(batch=np.arange(4) + rank, loss=1.0)
    assert not (tmp_path / "run.trace").exists()
    sessions = [read_trace(tmp_path / f"run.rank{r}.trace").sessions[0] for r in (0, 1)]
    assert [(s.rank, s.world_size) for s in sessions] == [(0, 2), (1, 2)]
    result = compare(tmp_path / "run.rank0.trace", tmp_path / "run.rank1.trace")
    assert result.differed == "batch"
    assert "compare the traces of one rank" in " ".join(result.notes)


def test_tracing_imports_no_framework(tmp_path: Path) -> None:
    code = f"""
    import json, sys, numpy as np, rngstate
    rngstate.seed_everything(0)
    with rngstate.trace({str(tmp_path / 't.trace')!r}) as trace:
        trace.step(batch=(np.ones((2, 3)), [1, 2]), loss=np.float32(0.5))
    from rngstate.tracing import compare
    compare({str(tmp_path / 't.trace')!r}, {str(tmp_path / 't.trace')!r})
    print(json.dumps(sorted({{"torch", "tensorflow", "paddle", "keras", "jax"}} & set(sys.modules))))
    """
    assert json.loads(run_python(code)) == []


def test_frame_layout() -> None:
    data = records.frame([records.STEP, 1, *[None] * (len(records.STEP_FIELDS) - 1)])
    length, checksum = struct.unpack(">II", data[:8])
    assert length == len(data) - 8 and checksum == zlib.crc32(data[8:])
    assert records.decode_payload(data[8:], 0) == [1, 1] + [None] * (len(records.STEP_FIELDS) - 1)


def test_a_step_recorded_inside_a_scope_sees_the_state_as_if_it_had_exited(tmp_path: Path) -> None:
    def run(path: Path, inside: bool) -> list[dict[str, bytes]]:
        rngstate.seed_everything(2)
        with rngstate.trace(path) as trace:
            with rngstate.rng_scope("dropout"):
                random.random()
                if inside:
                    trace.step()
            if not inside:
                trace.step()
        record = read_trace(path).steps[0]
        return [record.streams, record.substreams, {"scopes": record.scopes or b""}]

    assert run(tmp_path / "in.trace", True) == run(tmp_path / "out.trace", False)


def test_many_scopes_one_touched(tmp_path: Path) -> None:
    rngstate.seed_everything(0)
    for index in range(50):
        with rngstate.rng_scope(f"model/layer{index}"):
            pass
    with rngstate.trace(tmp_path / "t.trace") as trace:
        trace.step()
        trace.step()
        with rngstate.rng_scope("model/layer7"):
            random.random()
        trace.step()
    first, second, third = read_trace(tmp_path / "t.trace").steps
    assert len(first.substreams) == 50 and second.substreams == {}
    assert set(third.substreams) == {"model/layer7"}  # the scope ran: its streams are listed again
    changed = {name for name, digest in third.substreams["model/layer7"].items()
               if digest != first.substreams["model/layer7"][name]}
    assert changed == {"python"}
    assert first.scopes == second.scopes != third.scopes


def test_an_unchanged_snapshot_reuses_its_fingerprint_only_when_equality_is_exact() -> None:
    """A tracked generator's snapshot equal to the previous step's reuses its fingerprint, but
    not when == cannot tell (0.0 == -0.0 encode differently; arrays compare elementwise)."""
    from rngstate.tracing.digests import fingerprint
    from rngstate.tracing.streams import StreamFingerprints

    streams = StreamFingerprints()

    def encode(snapshot: tuple) -> dict:
        return {"words": [int(w) for w in snapshot[0]], "cache": snapshot[1]}

    first = streams._stream("g", ((1, 2), 0.0), encode)
    assert streams._stream("g", ((1, 2), 0.0), encode) == first == fingerprint(encode(((1, 2), 0.0)))
    assert streams._stream("g", ((1, 2), -0.0), encode) == fingerprint(encode(((1, 2), -0.0))) != first
    held = (np.arange(3), None)  # == on arrays is elementwise: never taken for "unchanged"
    assert streams._stream("a", held, encode) == fingerprint(encode(held))
    changed = (np.array([0, 1, 5]), None)
    assert streams._stream("a", changed, encode) == fingerprint(encode(changed))


def test_a_substream_is_fingerprinted_as_its_stream_would_be_in_that_state(tmp_path: Path) -> None:
    """A touched substream's fingerprint is the CRC-32 of its stream's state bytes, the
    fingerprint the global stream gets in the same state (one definition for both)."""
    from rngstate import backends

    rngstate.seed_everything(4)
    with rngstate.trace(tmp_path / "t.trace") as trace:
        with rngstate.rng_scope("dropout"):
            random.random(), np.random.random(), torch.rand(3)
            inside = {name: struct.pack(">I", zlib.crc32(backends.stream(name).state_bytes()))
                      for name in ("python", "numpy", "torch.cpu")}
        trace.step()
    record = read_trace(tmp_path / "t.trace").steps[0]
    assert {name: record.substreams["dropout"][name] for name in inside} == inside
