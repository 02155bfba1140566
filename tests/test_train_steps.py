"""save_model.py's steps (load, build, compile, fit, evaluate) as separate functions."""

from pathlib import Path

from pyimagesearch import train as steps
from pyimagesearch.train import TrainConfig
from tests.conftest import write_dataset


def test_the_schedule_is_sized_from_the_images_that_decoded(tmp_path: Path, monkeypatch):
    """Unreadable training files are skipped; the learning-rate schedule must count the
    images that decoded, or the cosine never reaches zero and the warm-up overruns its
    epoch. (Mutation: sizing it from len(run.splits["training"].paths) fails this.)"""
    dataset = write_dataset(tmp_path / "data", {"training": 12, "validation": 2, "testing": 2})
    for broken in sorted((dataset / "training" / "Parasitized").iterdir())[:8]:
        broken.write_bytes(b"not an image")
    config = TrainConfig(str(dataset), epochs=1, batch_size=4, seed=1, image_size=(32, 32))
    run = steps.load_splits(config)
    assert len(run.splits["training"].paths) == 24 and len(run.arrays["training"][1]) == 16
    steps.build_network(run)
    seen = []
    real = steps.compile_model
    monkeypatch.setattr(
        steps, "compile_model", lambda model, *args: seen.append(args) or real(model, *args)
    )
    steps.compile_network(run)
    (epochs, schedule, steps_per_epoch, learning_rate) = seen[0]
    assert steps_per_epoch == 16 // 4


def test_splits_too_big_for_memory_are_refused_before_decoding(tmp_path: Path, monkeypatch):
    """At --image-size 1024 the tutorial's 500 images need about 8 GiB as float32; with
    less available the run stops in one line naming the size, before any decode.
    (Mutation: removing check_memory from decode_splits lets it decode.)"""
    import pytest

    from pyimagesearch import data
    from pyimagesearch.errors import UserError

    dataset = write_dataset(tmp_path / "data", {"training": 4, "validation": 1, "testing": 1})
    monkeypatch.setattr(data, "available_memory", lambda: 200 << 20)  # 200 MiB
    decoded = []
    monkeypatch.setattr(steps, "load_split", lambda *args: decoded.append(args))
    config = TrainConfig(str(dataset), epochs=1, batch_size=4, seed=1, image_size=(1024, 1024))
    with pytest.raises(
        UserError, match=r"at 1024x1024 needs about 0\.2 GiB .* smaller --image-size"
    ):
        steps.load_splits(config)
    assert decoded == []
