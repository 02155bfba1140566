"""save_model.py's steps (load, build, compile, fit, evaluate) as separate functions."""

from pathlib import Path

import pytest

from pyimagesearch.core.errors import UserError
from pyimagesearch.training import train as steps
from pyimagesearch.training.train import TrainConfig
from tests.conftest import write_dataset


def test_the_schedule_is_sized_from_the_images_that_decoded(tmp_path: Path, monkeypatch):
    """Unreadable training files are skipped (the one scan names and drops them before
    the split); the learning-rate schedule must count the images that decoded, or the
    cosine never reaches zero and the warm-up overruns its epoch. (Mutation: sizing it
    from the files on disk, 24, fails this.)"""
    dataset = write_dataset(tmp_path / "data", {"training": 12, "validation": 2, "testing": 2})
    for broken in sorted((dataset / "training" / "Parasitized").iterdir())[:8]:
        broken.write_bytes(b"not an image")
    config = TrainConfig(str(dataset), epochs=1, batch_size=4, seed=1, image_size=(32, 32))
    run = steps.load_splits(config)
    assert len(run.splits["training"].paths) == 16 and len(run.arrays["training"][1]) == 16
    steps.build_network(run)
    seen = []
    real = steps.compile_model
    monkeypatch.setattr(
        steps, "compile_model", lambda model, *args: seen.append(args) or real(model, *args)
    )
    steps.compile_network(run)
    (epochs, schedule, steps_per_epoch, *_) = seen[0]
    assert steps_per_epoch == 16 // 4


def test_splits_too_big_for_memory_are_refused_before_decoding(tmp_path: Path, monkeypatch):
    """At --image-size 1024 the tutorial's 500 images need about 8 GiB as float32; with
    less available the run stops in one line naming the size, before any decode.
    (Mutation: removing check_memory from decode_splits lets it decode.)"""
    from pyimagesearch.training import data

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


def test_recomputed_statistics_are_the_training_images_own(tmp_path: Path):
    """--optimizer adam --bn-statistics recomputed: the saved network's BatchNormalization
    statistics are recomputed after fit on the un-augmented training images, so the
    first layer's (which sees the pixels) are their per-channel mean and variance; the
    provenance names both choices. (Mutations: leaving the momentum at 0.9 fails the
    mean; dropping the call from evaluate_network fails it too.)"""
    import keras
    import numpy as np

    dataset = write_dataset(tmp_path / "data", {"training": 16, "validation": 2, "testing": 2})
    config = TrainConfig(
        str(dataset), epochs=1, batch_size=8, seed=1, image_size=(32, 32),
        optimizer="adam", bn_statistics="recomputed", learning_rate=0.001, verbose=0,
        stain="none",  # the first BatchNormalization sees the pixels themselves
    )  # fmt: skip
    run = steps.load_splits(config)
    steps.build_network(run)
    steps.compile_network(run)
    assert isinstance(run.model.optimizer, keras.optimizers.Adam)
    steps.fit_network(run)
    result = steps.evaluate_network(run)
    first = next(
        layer for layer in result.model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    images = run.arrays["training"][0]  # 32 images: four equal batches of 8
    np.testing.assert_allclose(first.moving_mean.numpy(), images.mean(axis=(0, 1, 2)), atol=1e-5)
    # The mean of the batches' variances: close to the images' own for random pixels.
    np.testing.assert_allclose(first.moving_variance.numpy(), images.var(axis=(0, 1, 2)), rtol=0.05)
    assert first.momentum == 0.9  # restored for anyone who trains the model further
    provenance = result.metadata["provenance"]
    assert (provenance["optimizer"], provenance["bn_statistics"]) == ("adam", "recomputed")


def test_adam_epochs_are_a_quarter_of_the_run_and_at_least_one():
    """adam-then-sgd's switch: 3 of the recipe's 12 epochs (the measured one), one of a
    1-2 epoch trial. (Mutation: round() in place of rounding half up gives 2 for
    --epochs 10.)"""
    from pyimagesearch.core.recipes import adam_epochs

    assert [adam_epochs(n) for n in (1, 2, 4, 10, 12, 25)] == [1, 1, 1, 3, 3, 6]


def test_adam_then_sgd_resumes_from_either_phase_to_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch, capsys
):
    """--optimizer adam-then-sgd over 3 epochs, one compile, one fit(): Adam (0.001,
    scheduled over all 3) for epoch 1, then SGD (the recipe's 0.03) scheduled over the 2
    left. A checkpoint of epoch 1 (Adam's last) and one of epoch 2 (in SGD) each resume
    to the uninterrupted run's exact weights; a checkpoint written before the two rules
    became one optimizer (a stock Adam) is refused in one line. (Mutations: a switch
    after 2 epochs in compile_model fails the switch step; SGD scheduled from the run's
    first step in place of the switch fails the rate at the switch; dropping the
    isinstance check in _restore resumes the old checkpoint with Adam throughout.)"""
    import shutil

    import keras
    import numpy as np
    import pytest

    from pyimagesearch.core.errors import UserError
    from pyimagesearch.network.optimizers import AdamThenSGD

    dataset = write_dataset(tmp_path / "data", {"training": 16, "validation": 2, "testing": 2})

    def config(**fields) -> TrainConfig:
        return TrainConfig(
            str(dataset), epochs=3, batch_size=8, seed=3, image_size=(32, 32),
            optimizer="adam-then-sgd", learning_rate=0.03, schedule="cosine", verbose=2,
            **fields,
        )  # fmt: skip

    kept = {}
    real_save = steps.save_model

    def save_and_keep(model, path, metadata):
        real_save(model, path, metadata)
        epoch = metadata["checkpoint"]["epoch"]
        kept[epoch] = shutil.copy(path, tmp_path / f"epoch-{epoch}.checkpoint")

    monkeypatch.setattr(steps, "save_model", save_and_keep)
    result = steps.train(config(checkpoint=str(tmp_path / "run.checkpoint")))
    out = capsys.readouterr().out
    assert "training network for 3 epochs (Adam for 1, then SGD)" in out
    # One fit(): Keras counts the epochs out of the run's 3.
    shown = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert shown == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"], shown
    assert len(result.history["loss"]) == 3 and result.metadata["provenance"]["optimizer"] == (
        "adam-then-sgd"
    )
    monkeypatch.setattr(steps, "save_model", real_save)

    for epoch in (1, 2):
        restored = steps.load_model(kept[epoch], compile=True)[0].optimizer
        # 4 steps an epoch; SGD's schedule starts at the switch, at its peak (a 2-epoch
        # phase has no room for a warm-up) and falls to zero over its own 8 steps.
        assert isinstance(restored, AdamThenSGD) and restored.switch_step == 4
        assert int(restored.iterations) == 4 * epoch
        assert np.float32(restored._learning_rate(4)) == np.float32(0.03)
        resumed = steps.train(config(checkpoint=kept[epoch], resume=True))
        for mine, theirs in zip(resumed.model.weights, result.model.weights, strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    older = steps.load_model(kept[1], compile=True)[0]
    older.compile(optimizer=keras.optimizers.Adam(0.001), loss="sparse_categorical_crossentropy")
    old_path = tmp_path / "older.checkpoint"
    real_save(older, old_path, steps.read_metadata(Path(kept[1])))
    with pytest.raises(UserError, match="older version"):
        steps.train(config(checkpoint=str(old_path), resume=True))


def test_auto_precision_is_bfloat16_only_with_amx_and_a_resume_keeps_its_checkpoints(
    tmp_path: Path, monkeypatch
):
    """--precision auto (the default recipe's): bfloat16 where the CPU has AMX, float32
    where it has not, and a resumed run keeps the arithmetic its checkpoint was trained
    in, whatever CPU it resumes on (else resuming on another machine is refused as
    "another recipe"). What was asked for explicitly is never changed. (Mutations:
    dropping the checkpoint rule in resolve_precision fails the last assert; testing
    for "avx512_bf16" in cpu_has_amx fails the /proc/cpuinfo one on an AVX512-BF16 EPYC
    line.)"""
    from pyimagesearch.network import acceleration
    from pyimagesearch.training.serialization import save_model

    flags = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 {}\n"
    for line, expected in ((flags.format("amx_bf16 amx_tile"), True), (flags.format(""), False)):
        (tmp_path / "cpuinfo").write_text("processor\t: 0\n" + line)
        assert acceleration.cpu_has_amx(str(tmp_path / "cpuinfo")) is expected, line
    assert acceleration.cpu_has_amx(str(tmp_path / "absent")) is False

    for amx, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(acceleration, "cpu_has_amx", lambda amx=amx: amx)
        assert acceleration.training_precision("auto")[0] == policy
        assert acceleration.training_precision("float32") == ("float32", "asked for")
        assert steps.resolve_precision(TrainConfig("d", precision="auto"))[0] == policy

    # A checkpoint trained in bfloat16, resumed with auto on a CPU without AMX.
    checkpoint = tmp_path / "m.model.checkpoint"
    metadata = {"class_names": ["a", "b"], "preprocessing": steps.default_recipe((32, 32))}
    state = {"epoch": 1, "precision": "mixed_bfloat16"}
    save_model(steps.build_model(2, (32, 32)), checkpoint, {**metadata, "checkpoint": state})
    resumed = TrainConfig("d", precision="auto", resume=True, checkpoint=str(checkpoint))
    assert steps.resolve_precision(resumed) == ("mixed_bfloat16", "auto: the checkpoint's")


def test_resume_refuses_a_checkpoint_of_another_network(tmp_path: Path):
    """--head and --stain change the network: a checkpoint made with another of either
    is refused in one line before anything loads, and one made before --stain existed
    resumes as "none". (Mutation: leaving "stain" out of check_resumable's comparison
    lets the grey-world run resume the plain checkpoint.)"""
    from pyimagesearch.training.serialization import save_model

    checkpoint = tmp_path / "m.model.checkpoint"
    metadata = {"class_names": ["a", "b"], "preprocessing": steps.default_recipe((32, 32))}
    state = {"epoch": 1, "epochs": 2, "batch_size": 4, "precision": "float32",
             "learning_rate": 0.03, "schedule": "cosine", "augmentation": "none",
             "head": "tutorial", "optimizer": "sgd", "seed": 1}  # fmt: skip
    save_model(steps.build_model(2, (32, 32)), checkpoint, {**metadata, "checkpoint": state})

    def config(**changes) -> TrainConfig:
        fields = {k: state[k] for k in ("epochs", "batch_size", "precision", "learning_rate")}
        fields |= {k: state[k] for k in ("schedule", "augmentation", "head", "optimizer")}
        return TrainConfig("d", image_size=(32, 32), resume=True, checkpoint=str(checkpoint),
                           **{**fields, **changes})  # fmt: skip

    steps.check_resumable(config(), ["a", "b"])  # no "stain" in the state: "none"
    for change in ({"stain": "grey-world"}, {"head": "gap"}):
        with pytest.raises(UserError, match="--resume: checkpoint was made with"):
            steps.check_resumable(config(**change), ["a", "b"])
