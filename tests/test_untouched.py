"""Issue 41: nothing beside an output is touched, and no file can flood, hang or disguise
what runs. Each case of the hostile probe, with the mutation that makes its test fail in
its docstring. Commands that could hang or eat memory run under run_capped (a timeout
and an address-space cap).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pyimagesearch import safety
from tests.conftest import ROOT, run_script
from tests.test_safety import model_file, run_capped  # noqa: F401 (a fixture)

# A writer killed (SIGKILL) in the middle of a named write, as a power cut would.
KILLED_WRITER = """
import os, sys
from pathlib import Path
from pyimagesearch import safety
with safety.replacing(Path(sys.argv[1]), sys.argv[2]) as temporary:
    temporary.write_text("half")
    os.kill(os.getpid(), 9)
"""

# The same, through the open-file writer (O_TMPFILE where the file system has it).
KILLED_OPEN_WRITER = """
import os, sys
from pyimagesearch import safety
with safety.open_replacing(sys.argv[1]) as handle:
    handle.write("half")
    handle.flush()
    os.kill(os.getpid(), 9)
"""


def killed_write(path: Path, kind: str = "writing", script: str = KILLED_WRITER) -> None:
    """Leave what a writer of PATH killed by SIGKILL leaves."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), kind],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL


def lookalikes(folder: Path, name: str, kind: str = "writing") -> list[Path]:
    """Files and a folder of the user's whose names look like our leftovers: the probe's
    three, one that copies the whole form with a wrong digest, and a folder."""
    prefix = safety.temporary_prefix(Path(name), kind)
    files = [
        folder / f"{prefix}99999",
        folder / f"{prefix}424242.notes.txt",
        folder / f"{prefix}0777",
        folder / f"{prefix}99999.0.0.0.0123456789abcdef{Path(name).suffix}",
    ]
    for path in files:
        path.write_text("the user's")
    # Folders: one with a leftover's name, one with our whole form of a dead writer.
    dead = f"4194304999.{safety.BOOT}.1.0"
    suffix = Path(name).suffix
    folders = [
        folder / f"{prefix}12345",
        folder / f"{prefix}{dead}.{safety._seal(prefix, dead, suffix)}{suffix}",
    ]
    for path in folders:
        path.mkdir()
    return [*files, *folders]


def test_the_sweep_deletes_only_its_own_dead_leftovers(tmp_path: Path):
    """The probe: three user files named like leftovers were deleted by the next
    --csv, a folder with such a name crashed the sweep, and a SIGKILLed writer's own
    temporary (a mkstemp name) was never swept. Now the leftover of a killed writer
    goes, and every look-alike (a file, one with our whole form but a wrong digest, a
    folder) stays. Mutations: the old sweep (glob PREFIX*, digits after the prefix taken
    as the pid) deletes the user's files; dropping the digest check deletes the forged
    form; dropping the regular-file check crashes on a folder (IsADirectoryError);
    a sweep that never deletes leaves the killed writer's file."""
    output = tmp_path / "out.csv"
    killed_write(output)
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(safety.temporary_prefix(output))
    mine = lookalikes(tmp_path, output.name)
    with safety.replacing(output) as temporary:
        temporary.write_text("path,label\n")
    assert sorted(tmp_path.iterdir()) == sorted([output, *mine])
    assert all(p.read_text() == "the user's" for p in mine if p.is_file())


def test_a_killed_open_file_writer_leaves_nothing(tmp_path: Path):
    """open_replacing writes a nameless file (O_TMPFILE) and names it only when it is
    complete, so SIGKILL in the middle leaves nothing beside the output at all.
    Mutation: open_replacing always taking the named fallback leaves a file."""
    output = tmp_path / "out.csv"
    output.write_text("earlier\n")
    killed_write(output, script=KILLED_OPEN_WRITER)
    assert sorted(tmp_path.iterdir()) == [output] and output.read_text() == "earlier\n"


def test_a_live_writers_and_another_hosts_temporaries_are_kept(tmp_path: Path):
    """A temporary whose writer still runs (a write in progress) is kept, and so is
    another host's; one whose pid is alive but started at another time is a dead
    writer's pid, reused, and goes. Mutations: _writer_gone returning True for every
    pid deletes the live one; ignoring the start time keeps the reused one."""
    output = tmp_path / "out.csv"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        prefix = safety.temporary_prefix(output)
        start = safety.process_start(alive.pid)
        live = f"{alive.pid}.{safety.BOOT}.{start}.0"
        reused = f"{alive.pid}.{safety.BOOT}.{int(start) - 1}.0"
        names = [f"{prefix}{f}.{safety._seal(prefix, f, '.csv')}.csv" for f in (live, reused)]
        for name in names:
            (tmp_path / name).write_text("half")
        other = tmp_path / f".out.csv.writing.other-host.{alive.pid}.0.0.0.0123456789abcdef.csv"
        other.write_text("half")
        with safety.replacing(output) as temporary:
            temporary.write_text("path,label\n")
        alive.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output.name, names[0], other.name])


def test_glob_characters_in_an_output_name_match_nothing_else(tmp_path: Path):
    """--csv 'sw/[n]otes.csv' deleted notes.csv's leftover: the name was used as a glob.
    Mutation: the old sweep (path.parent.glob(prefix + '*'), no digest) fails it."""
    killed_write(tmp_path / "notes.csv")
    (leftover,) = tmp_path.iterdir()
    with safety.replacing(tmp_path / "[n]otes.csv") as temporary:
        temporary.write_text("x\n")
    assert leftover.exists()
    with safety.replacing(tmp_path / "notes.csv") as temporary:  # its own output sweeps it
        temporary.write_text("x\n")
    assert not leftover.exists()


def test_the_commands_leave_the_users_look_alikes(tmp_path: Path, model_file: Path):  # noqa: F811
    """The probe's commands, as run: load_model.py --csv and save_model's writer beside
    files named like their leftovers. Mutation: the old sweep deletes them."""
    from tests.conftest import write_image

    images = tmp_path / "images"
    write_image(images / "a.png")
    out = tmp_path / "sw"
    out.mkdir()
    mine = lookalikes(out, "out.csv")
    result = run_script(
        "load_model.py", "-m", str(model_file), "-i", str(images), "-n", "0",
        "--csv", str(out / "out.csv"), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(out.iterdir()) == sorted([out / "out.csv", *mine])

    import keras

    from pyimagesearch.serialization import SAVING, save_model
    from tests.test_safety import METADATA

    saved = tmp_path / "sv"
    saved.mkdir()
    theirs = lookalikes(saved, "sv.keras", SAVING)
    (saved / f".sv.keras.saving.{safety.HOST}.99999.txt").write_text("the user's")
    network = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    save_model(network, saved / "sv.keras", METADATA)
    assert sorted(saved.iterdir()) == sorted(
        [saved / "sv.keras", saved / f".sv.keras.saving.{safety.HOST}.99999.txt", *theirs]
    )
