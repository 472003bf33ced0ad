"""Overhead of rngstate's DataLoaders against the plain framework DataLoader, in the same run.

    python benchmarks/dataloader_overhead.py            # torch, and paddle when installed
    python benchmarks/dataloader_overhead.py --quick    # fewer rounds

Two datasets.  The image one (issue 4): ``__getitem__`` is a usual image training transform --
decode a 320x320 JPEG (PIL), random 280x280 crop resized to 224x224 (bilinear), random
horizontal flip, conversion to float, per-channel normalization and a brightness jitter -- with
NumPy, Python and torch/paddle randomness, about 2 ms a sample whatever is drawn; batch 32.  The
cheap one (issue 16): a row of a tensor plus Gaussian noise from torch and one NumPy draw, about
8 us a sample through the plain loader as in the issue (for Paddle, whose draws cost more: a
NumPy row, which its DataLoader collates, plus one paddle and one NumPy draw); batch 64.

Both loaders get the same dataset, batch size, shuffle and workers.  Each row runs several
rounds; in a round the loaders alternate epochs and the best epoch of each gives one ratio, so
load from other processes hits both alike.  The median and the range of the rounds' ratios are
reported, for wall time and for CPU time (this process plus its workers).  The rngstate loader
runs with each ``seed_per`` mode.  Each framework runs in its own process.

What rngstate adds per sample is seeding Python, NumPy and torch/paddle from a derived key,
plus, with ``num_workers=0``, putting the training process's generators back after each batch;
the "seeding it" rows measure that alone on a dataset that does nothing, next to its floor:
the frameworks' own seeding calls for the same generators from 128-bit keys made in advance.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import io
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rngstate

SAMPLES = 160
BATCH_SIZE = 32
IMAGE_EPOCHS = 6  # per round; each round gives one ratio (the best epoch of each loader)
CHEAP_SAMPLES = 64 * 64
CHEAP_BATCH = 64
CHEAP_EPOCHS = 9  # per round: its epochs are short, and the best of few is at the mercy of the load
# seed_per -> num_workers -> the most the rngstate loader may cost, as a ratio to the plain one
IMAGE_TARGETS = {"sample": {0: 1.05, 2: 1.05}, "batch": {0: 1.05, 2: 1.05}}  # issue 4
CHEAP_TARGETS = {"sample": {0: 1.6, 2: 1.15}, "batch": {0: 1.0, 2: 1.0}}  # issue 25 (16: 2.0, 1.3, 1.1)
CASES = ["image", "cheap"]  # which datasets to measure (--cases)
SEED_PER = ["sample", "batch"]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255


def jpeg_images(count: int) -> list[bytes]:
    """Smooth random 320x320 RGB pictures, JPEG-encoded like a photo dataset on disk."""
    from PIL import Image

    source = np.random.RandomState(0)
    images = []
    for _ in range(count):
        coarse = source.randint(0, 256, size=(20, 20, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((320, 320), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def random_crop(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """A random ``size`` x ``size`` box.  Its size is fixed so that every sample costs the same
    whatever the random draws (RandomResizedCrop's cost varies with the drawn scale, which
    would make two loaders with different draws incomparable)."""
    left = random.randint(0, width - size)
    top = int(np.random.randint(0, height - size + 1))
    return left, top, left + size, top + size


class Images:
    """Map-style dataset of JPEG images, decoded and augmented on every access."""

    def __init__(self, to_tensor: Callable[[np.ndarray], Any], jitter: Callable[[], float]) -> None:
        self.jpegs = jpeg_images(32)
        self.to_tensor = to_tensor
        self.jitter = jitter

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        picture = Image.open(io.BytesIO(self.jpegs[index % len(self.jpegs)])).convert("RGB")
        box = random_crop(*picture.size, 280)
        image = np.asarray(picture.resize((224, 224), Image.Resampling.BILINEAR, box=box))
        x = (image.astype(np.float32) - MEAN) / STD
        x *= 1.0 + 0.1 * (self.jitter() - 0.5)
        if random.random() < 0.5:
            x = x[:, ::-1]  # a view: the copy below costs the same either way
        return self.to_tensor(np.ascontiguousarray(x.transpose(2, 0, 1))), index % 10


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (microsecond resolution;
    os.times() counts 10 ms ticks)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def epoch_cost(loader: Any, epoch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its workers) for one epoch."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    cpu_before, start = cpu_seconds(), time.perf_counter()
    for _ in loader:
        pass
    wall = time.perf_counter() - start
    gc.collect()  # workers of a finished iterator are joined, so their CPU time is counted
    return wall, cpu_seconds() - cpu_before


def spread(values: list[float]) -> str:
    """Median and range of the per-round ratios."""
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def compare(name: str, make_plain: Callable[[], Any], make_ours: Callable[[], Any], target: float,
            rounds: int, epochs: int) -> None:
    """``rounds`` rounds of ``epochs`` epochs per loader, alternating; each round keeps the best
    epoch of each loader (load elsewhere only adds time) and gives one ratio.  The median and
    the range of those ratios are reported: on a shared machine one figure says little."""
    plain, ours = make_plain(), make_ours()
    epoch_cost(plain, 0), epoch_cost(ours, 0)  # warm up: first fork, caches
    walls: list[float] = []
    cpus: list[float] = []
    plain_best = [float("inf")] * 2
    epoch = 0
    for _ in range(rounds):
        best = {"plain": [float("inf")] * 2, "ours": [float("inf")] * 2}
        for _ in range(epochs):
            epoch += 1
            order = [("plain", plain), ("ours", ours)] if epoch % 2 else [("ours", ours), ("plain", plain)]
            for label, loader in order:
                wall, cpu = epoch_cost(loader, epoch)
                best[label] = [min(best[label][0], wall), min(best[label][1], cpu)]
        walls.append(best["ours"][0] / best["plain"][0])
        cpus.append(best["ours"][1] / best["plain"][1])
        plain_best = [min(plain_best[0], best["plain"][0]), min(plain_best[1], best["plain"][1])]
    met = max(statistics.median(walls), statistics.median(cpus)) <= target
    print(
        f"| {name} | {plain_best[0] * 1e3:,.1f} ms / {plain_best[1] * 1e3:,.1f} ms | "
        f"{spread(walls)} | {spread(cpus)} | <= {target:.2f}x {'met' if met else 'MISSED'} |",
        flush=True,
    )


def per_sample_overhead(name: str, dataset: Any, repeats: int) -> None:
    """What the seeding costs per sample, measured on a dataset that does nothing (hot caches:
    a lower bound), next to what one sample of ``dataset`` costs."""
    from rngstate.data.wrappers import SeededBatch

    class Nothing:
        def __getitem__(self, index: int) -> int:
            return index

    nothing, count = Nothing(), 4096

    def load(pid: int | None) -> None:
        # pid=None: this process, the training one (generators put back after each batch);
        # another pid: as a worker sees the batches it was sent.
        for start in range(0, count, CHEAP_BATCH):
            batch = SeededBatch(list(range(start, start + CHEAP_BATCH)), root=0, parts=("bench",),
                                epoch=0, first=start, pid=pid)
            [nothing[index] for index in batch]

    def samples() -> None:
        for i in range(256):
            dataset[i]

    best = dict.fromkeys(("training", "worker", "samples", "public"), float("inf"))
    for _ in range(repeats):
        for label, run, runs in (("training", functools.partial(load, None), count),
                                 ("worker", functools.partial(load, -1), count),
                                 ("samples", samples, 256),
                                 ("public", functools.partial(public_seeding, count), count)):
            start = time.perf_counter()
            run()
            best[label] = min(best[label], (time.perf_counter() - start) / runs)
    ratio = best["worker"] / best["public"]
    verdict = "met" if ratio <= 1 else "MISSED"
    print(
        f"| {name}: one sample {best['samples'] * 1e6:,.1f} us; seeding it {best['training'] * 1e6:.1f} us "
        f"(training process), {best['worker'] * 1e6:.1f} us (worker) | public seeding calls: "
        f"{best['public'] * 1e6:.1f} us | {ratio:.2f}x | | <= 1.00x {verdict} (hot caches) |",
        flush=True,
    )


def public_seeding(count: int) -> None:
    """The peer of per-sample seeding (issue 16's floor): each generator rngstate seeds per
    sample, seeded from 128 bits (torch and paddle: a 64-bit seed, all they take) through the
    framework's own call, with keys made in advance -- no derivation, no bookkeeping."""
    keys = [((i + 1) * 0x9E3779B97F4A7C15) % 2**128 for i in range(count)]
    words = [[(key >> (32 * j)) & 0xFFFFFFFF for j in range(4)] for key in keys]
    framework = sys.modules.get("torch") or sys.modules.get("paddle")
    if "torch" in sys.modules:
        framework_seed = sys.modules["torch"].default_generator.manual_seed
    else:
        framework_seed = sys.modules["paddle"].base.core.default_cpu_generator().manual_seed
    assert framework is not None
    for key, key_words in zip(keys, words, strict=True):
        random.seed(key)
        np.random.seed(key_words)
        framework_seed(key & (2**63 - 1))


class Cheap:
    """A dataset of cheap samples, as issue 16 measured them (about 8 us a sample through the
    plain loader): a row of a tensor with one framework draw and one NumPy draw (tokenized
    text with light augmentation looks like this).  For torch the draw is Gaussian noise
    added to the row; Paddle's draws cost more than that by themselves, so its sample is
    the row plus one scalar draw."""

    def __init__(self, rows: Any, augment: Callable[[Any], tuple[Any, ...]]) -> None:
        self.rows = rows
        self.augment = augment

    def __len__(self) -> int:
        return CHEAP_SAMPLES

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.augment(self.rows[index]), float(np.random.rand()))


def loader_rows(framework: str, plain_loader: Callable[..., Any], our_loader: Callable[..., Any],
                images: Images, cheap: Cheap, rounds: int) -> None:
    if "image" in CASES:
        per_sample_overhead(f"{framework}, image dataset", images, 3)
    if "cheap" in CASES:
        per_sample_overhead(f"{framework}, cheap dataset", cheap, 3)
    cases = [("image (2 ms)", images, BATCH_SIZE, IMAGE_EPOCHS, IMAGE_TARGETS),
             ("cheap", cheap, CHEAP_BATCH, CHEAP_EPOCHS, CHEAP_TARGETS)]
    cases = [case for case in cases if case[0].split()[0] in CASES]
    for label, dataset, batch_size, epochs, targets in cases:
        for workers in (0, 2):
            for seed_per in SEED_PER:
                target = targets[seed_per][workers]
                extra = {} if seed_per == "sample" else {"seed_per": seed_per}
                compare(
                    f"{framework}, {label}, {workers} workers, seed_per={seed_per}",
                    functools.partial(plain_loader, dataset, batch_size, workers),
                    functools.partial(our_loader, dataset, batch_size, workers, extra),
                    target, rounds, epochs,
                )


def torch_rows(rounds: int) -> None:
    import torch

    import rngstate.torch

    torch.set_num_threads(1)

    def plain(dataset: Any, batch_size: int, workers: int) -> Any:
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                           num_workers=workers, generator=torch.Generator().manual_seed(0))

    def ours(dataset: Any, batch_size: int, workers: int, extra: dict[str, Any]) -> Any:
        return rngstate.torch.DataLoader(dataset, name=f"bench{workers}", batch_size=batch_size,
                                         shuffle=True, num_workers=workers, **extra)

    images = Images(torch.from_numpy, lambda: float(torch.rand(())))
    cheap = Cheap(torch.randn(CHEAP_SAMPLES, 16), lambda row: (row + 0.1 * torch.randn(16),))
    loader_rows("torch", plain, ours, images, cheap, rounds)


def paddle_rows(rounds: int) -> None:
    import paddle

    import rngstate.paddle

    def plain(dataset: Any, batch_size: int, workers: int) -> Any:
        return paddle.io.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)

    def ours(dataset: Any, batch_size: int, workers: int, extra: dict[str, Any]) -> Any:
        return rngstate.paddle.DataLoader(dataset, name=f"bench{workers}", batch_size=batch_size,
                                          shuffle=True, num_workers=workers, **extra)

    images = Images(lambda x: x, lambda: float(paddle.rand([])))
    cheap = Cheap(np.random.default_rng(0).standard_normal((CHEAP_SAMPLES, 16), dtype=np.float32),
                  lambda row: (row, float(paddle.rand([]))))
    loader_rows("paddle", plain, ours, images, cheap, rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 rounds per row instead of 7")
    parser.add_argument("--framework", choices=["torch", "paddle", "all"], default="all")
    parser.add_argument("--seed-per", default=",".join(SEED_PER),
                        help="comma-separated seeding modes of the rngstate loaders to measure")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: image, cheap")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    SEED_PER[:] = args.seed_per.split(",")
    CASES[:] = args.cases.split(",")
    if args.framework == "all":
        print(f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
              f"{rounds} rounds per row; ratios: median (range) over the rounds\n")
        print("| loader | plain: best wall / CPU per epoch | wall ratio | CPU ratio | target |")
        print("|---|---|---|---|---|", flush=True)
        for framework in ("torch", "paddle"):
            if importlib.util.find_spec(framework) is None:
                continue
            # One process per framework: the other framework's streams would be seeded too.
            # Fixed glibc malloc thresholds: with the dynamic ones, whether a decoded image's
            # buffer comes from fresh pages depends on unrelated allocations, which moved the
            # plain loader's time per sample by up to 30% between otherwise equal runs.
            quick = ["--quick"] if args.quick else []
            environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**26),
                           "MALLOC_TRIM_THRESHOLD_": str(2**28)}
            subprocess.run([sys.executable, __file__, "--framework", framework, *quick,
                            "--seed-per", args.seed_per, "--cases", args.cases], check=True, env=environment)
        return
    rngstate.seed_everything(0)
    if args.framework == "torch":
        torch_rows(rounds)
    else:
        paddle_rows(rounds)


if __name__ == "__main__":
    main()
