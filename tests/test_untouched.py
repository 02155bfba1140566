"""Issue 41: nothing beside an output is touched, and no file can flood, hang or disguise
what runs. Each case of the hostile probe, with the mutation that makes its test fail in
its docstring. Commands that could hang or eat memory run under run_capped (a timeout
and an address-space cap).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyimagesearch.core import safety
from tests.conftest import ROOT, run_script
from tests.test_safety import model_file, run_capped  # noqa: F401 (a fixture)

# A writer killed (SIGKILL) in the middle of a named write, as a power cut would.
KILLED_WRITER = """
import os, sys
from pathlib import Path

import pytest
from pyimagesearch.core import safety
with safety.replacing(Path(sys.argv[1]), sys.argv[2]) as temporary:
    temporary.write_text("half")
    os.kill(os.getpid(), 9)
"""

# The same, through the open-file writer (O_TMPFILE where the file system has it).
KILLED_OPEN_WRITER = """
import os, sys
from pyimagesearch.core import safety
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

    from pyimagesearch.training.serialization import SAVING, save_model
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


# --- build_dataset --source: nothing beside the source, no bombs, no hangs --------------


def class_zip(path: Path, classes: dict[str, int]) -> Path:
    """A zip of class folders of small real PNGs."""
    import zipfile

    from tests.conftest import write_image

    scratch = path.parent / f"{path.stem}-images"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, count in classes.items():
            for i in range(count):
                image = write_image(scratch / name / f"{name}{i}.png", size=(8, 8), seed=i)
                archive.write(image, f"{name}/{image.name}")
    return path


def listing(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def test_a_zip_source_touches_nothing_beside_it(tmp_path: Path):
    """The probe: build_dataset --source photos.zip deleted a user's photos_extracting/,
    wrote photos_extracted/ beside the zip, and built from an existing photos_extracted/
    (classes x/y) instead of the zip (a/b). Now the zip is extracted inside --output, in
    a folder the command makes and removes, and the images are moved (not copied) from
    there. Mutation: the old resolve_source (extract to PATH.stem + '_extracted', reuse
    it when present) fails every assertion."""
    home = tmp_path / "home"
    zipped = class_zip(home / "photos.zip", {"a": 6, "b": 6})
    shutil.rmtree(home / "photos-images")
    for folder, classes in (("photos_extracting", ("mine",)), ("photos_extracted", "xy")):
        for name in classes:
            (home / folder / name).mkdir(parents=True)
            (home / folder / name / "note.png").write_bytes(b"the user's")
    before = listing(home)
    output = tmp_path / "out"
    result = run_capped("-m", "pyimagesearch.build_dataset", "--source", str(zipped),
                        "--output", str(output), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert listing(home) == before
    assert sorted(p.name for p in (output / "training").iterdir()) == ["a", "b"]
    assert sorted(p.name for p in output.iterdir()) == [
        ".pyimagesearch-dataset", "testing", "training", "validation",
    ]  # fmt: skip
    assert len(list(output.rglob("*.png"))) == 12


def zip_bomb(path: Path, members: int = 2, each: int = 200 << 20) -> Path:
    """A zip of MEMBERS PNG-named members of EACH zero bytes: about 200 KB on disk per
    200 MB declared, written in 1 MB chunks (never whole in memory)."""
    import zipfile

    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            with archive.open(f"{'ab'[i % 2]}/{i}.png", "w", force_zip64=True) as member:
                for _ in range(each >> 20):
                    member.write(chunk)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path):
    """The probe: a 3.3 MB zip extracted 3 GB beside itself and copied 3 GB more. Now
    the directory's declared sizes are checked first: one line, exit 2, nothing written
    (no --output either), under run_capped's address-space cap. Mutation: skipping the ratio
    checks in zip_images extracts 400 MB (and the test finds the output)."""
    from tests.test_safety import refused

    bomb = zip_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 2 << 20
    output = tmp_path / "out"
    result = run_capped("-m", "pyimagesearch.build_dataset", "--source", str(bomb),
                        "--output", str(output), timeout=120)  # fmt: skip
    refused(result, "refusing a zip bomb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_zip_bounds_on_members_and_free_disk(tmp_path: Path, monkeypatch, capsys):
    """A zip of more members than MAX_ZIP_MEMBERS, or one that unpacks to more than the
    free disk, is refused from its directory alone. Mutations: dropping the member-count
    check, or the free-space check, lets the run through."""
    from pyimagesearch import build_dataset
    from pyimagesearch.core.errors import UserError

    zipped = class_zip(tmp_path / "photos.zip", {"a": 6, "b": 6})
    monkeypatch.setattr(build_dataset, "MAX_ZIP_MEMBERS", 11)
    argv = ["--source", str(zipped), "--output", str(tmp_path / "out")]
    with pytest.raises(UserError, match="12 members, more than the bound of 11"):
        build_dataset.main(argv)
    monkeypatch.undo()

    class Usage:  # a nearly full disk
        free = 1000

    monkeypatch.setattr(build_dataset.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(UserError, match="the disk has 1,000 free"):
        build_dataset.main(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos-images", "photos.zip"]


@pytest.mark.parametrize("kind", ["fifo", "loop", "device"])
def test_a_source_that_would_hang_or_loop_is_one_line(tmp_path: Path, kind: str):
    """The probe: --source on a FIFO (NotADirectoryError), a symlink loop (RuntimeError:
    Symlink loop). Now one line, exit 2, for them and for a device. Mutation: dropping
    check_source from main gives the tracebacks back (and /dev/zero never ends: the
    timeout fails it)."""
    from tests.test_safety import refused

    source = tmp_path / "source"
    if kind == "fifo":
        os.mkfifo(source)
    elif kind == "loop":
        source.symlink_to(source)
    else:
        source = Path("/dev/zero")
    result = run_capped("-m", "pyimagesearch.build_dataset", "--source", str(source),
                        "--output", str(tmp_path / "out"), timeout=60)  # fmt: skip
    expected = {"fifo": "is a FIFO", "loop": "symbolic links", "device": "is a device"}[kind]
    refused(result, expected)
    assert not (tmp_path / "out").exists()


def test_link_across_file_systems_says_it_copies(tmp_path: Path, monkeypatch, capsys):
    """The probe: --link across devices said "hard-linking" while it copied. Now one
    warning says the images are copied, and the copy line says copying. Mutation:
    write_split without the can_link probe prints "hard-linking" (and os.link fails:
    the run is refused)."""
    from pyimagesearch import build_dataset
    from tests.conftest import write_image

    for name in "ab":
        for i in range(5):
            write_image(tmp_path / "src" / name / f"{name}{i}.png", size=(8, 8), seed=i)

    real_link = os.link

    def cross_device(source, target, *args, **kwargs):  # src/ is on "another device"
        if str(source).startswith(str(tmp_path / "src")):
            raise OSError(18, "Invalid cross-device link")
        return real_link(source, target, *args, **kwargs)

    monkeypatch.setattr(build_dataset.os, "link", cross_device)
    argv = ["--source", str(tmp_path / "src"), "--output", str(tmp_path / "out"), "--link"]
    assert build_dataset.main(argv) == 0
    captured = capsys.readouterr()
    assert "different file systems" in captured.err and "copying the images instead" in captured.err
    assert "hard-linking" not in captured.out and "copying 10 images" in captured.out
    assert len(list((tmp_path / "out").rglob("*.png"))) == 10


# --- bounded reads of a model file's members -------------------------------------------


def run_limited(code: str, *args: str, memory: int = 1 << 30, timeout: int = 120):
    """Python CODE in a child process under an address-space cap (1 GiB by default)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def swap_member(model: Path, target: Path, name: str, size: int, fill: bytes = b"\0") -> Path:
    """A copy of MODEL whose member NAME is SIZE bytes of FILL (deflated, written in 1 MB
    chunks: a few MB on disk, never whole in memory), with the manifest's SHA-256
    rewritten to match, as an attacker would."""
    import hashlib
    import json
    import zipfile

    from pyimagesearch.core import compiled

    chunk = fill * ((1 << 20) // len(fill))
    digest = hashlib.sha256()
    with (
        zipfile.ZipFile(model) as source,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
    ):
        manifest = compiled.read_manifest(source)
        for info in source.infolist():
            if info.filename not in (name, compiled.MANIFEST):
                archive.writestr(info, source.read(info.filename))
        with archive.open(name, "w", force_zip64=True) as member:
            for _ in range(size // len(chunk)):
                member.write(chunk)
                digest.update(chunk)
        manifest["sha256"][name] = digest.hexdigest()
        archive.writestr(compiled.MANIFEST, json.dumps(manifest))
    return target


LOAD_COMPILED = """
import sys
from pyimagesearch.core import compiled
try:
    compiled.load(sys.argv[1])
except compiled.Stale as why:
    print("Stale:", why)
    sys.exit(3)
print("loaded")
"""


@pytest.mark.parametrize(
    "member, size", [("openvino/model.bin", 3 << 30), ("openvino/model.xml", 1536 << 20)]
)
def test_an_oversized_network_member_is_never_read(
    tmp_path: Path,
    model_file: Path,  # noqa: F811
    member: str,
    size: int,
):
    """The probe: a 3 GB model.bin of zeros (5.7 MB deflated) with a matching manifest
    was read whole (MemoryError at 4.2 GB); a 1.5 GB model.xml loaded at 4.7 GB peak.
    Now the zip's directory bounds each network member before it is read (the bin by
    the weights' size, the XML outright): the compiled network is refused as altered
    (Keras would load the honest weights instead), in a child capped at 1 GiB of address
    space. Mutation: dropping check_network_sizes from read_ir reads the member and
    fails with MemoryError under the cap."""
    swapped = swap_member(model_file, tmp_path / "swapped.keras", member, size)
    assert swapped.stat().st_size < 16 << 20
    result = run_limited(LOAD_COMPILED, str(swapped))
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"{member} declares {size:,} bytes" in result.stdout
    result = run_limited(LOAD_COMPILED, str(model_file))  # the honest file loads so capped
    assert result.returncode == 0 and "loaded" in result.stdout, result.stderr[-2000:]


# --- the server: TensorFlow-free on every route, bounded workers, SIGTERM ends all -----


def resident_kb(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_every_route_answers_with_tensorflow_and_keras_unimportable(
    tmp_path: Path,
    model_file: Path,  # noqa: F811
):
    """The probe: GET /model, which the page asks for on opening, imported Keras and
    TensorFlow into the TensorFlow-free server (173 MB -> 826 MB per worker), and a
    malformed multipart body left "Expected boundary character 45, got 65 at index 2"
    in the log. Here the server runs where importing TensorFlow, Keras or scikit-learn
    fails, every route is called, and GET /model leaves its memory where it was.
    Mutations: Service.description importing public_metadata from serialization (Keras)
    makes /model a 500; dropping the python_multipart log level puts the line back."""
    import httpx

    from pyimagesearch.core.modelfile import file_sha256
    from pyimagesearch.serving.server_process import stop, wait_until_ready
    from tests.conftest import without_tensorflow
    from tests.serving import good_request

    log = tmp_path / "server.log"
    command = [sys.executable, *without_tensorflow("serve_model.py"), "--model",
               str(model_file), "--port", "0", "--precision", "float32"]  # fmt: skip
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = wait_until_ready(process, log, 180)
        with httpx.Client(base_url=url, timeout=30) as client:
            for path in ("/", "/app.js", "/style.css", "/healthz", "/readyz"):
                assert client.get(path).status_code == 200, path
            described = client.get("/model")
            assert described.status_code == 200
            assert described.json()["sha256"] == file_sha256(model_file)
            before = resident_kb(process.pid)
            for _ in range(5):
                answer = client.get("/model")
                assert answer.status_code == 200 and answer.json()["class_names"]
            grown = resident_kb(process.pid) - before
            assert client.request(**good_request()).status_code == 200
            bad = client.post(
                "/predict",
                content=b"--AAAA\r\nnot a part\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=-xyz"},
            )
            assert 400 <= bad.status_code < 500, bad.text
            assert client.get("/nowhere").status_code == 404
    finally:
        stop(process)
    text = log.read_text()
    assert grown < 20_000, f"GET /model grew the server by {grown} KiB"
    assert "Traceback" not in text and "blocked by the test" not in text, text[-3000:]
    assert "Expected boundary" not in text, text[-3000:]


def test_workers_are_capped_before_anything_loads(model_file: Path):  # noqa: F811
    """The probe: --workers 1000 was accepted (about 100 processes in 5 s). Now more
    than 4 per CPU is one line and exit 2, before the model loads. Mutation: dropping
    the check in serve_model.main starts the workers (the run times out)."""
    from tests.conftest import without_tensorflow
    from tests.test_safety import refused

    command = [sys.executable, *without_tensorflow("serve_model.py"), "--model",
               str(model_file), "--port", "0", "--workers", "1000"]  # fmt: skip
    # Its own session, so that a regression's workers all end with the test.
    with subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    refused(result, "--workers 1000 is more than 4 per CPU")


def test_a_stop_signal_stops_the_supervisor_starting_workers(monkeypatch):
    """SIGTERM while uvicorn's supervisor starts its workers: uvicorn only queued it and
    started the rest (and restarted those the signal had ended). The supervisor here
    starts none after the signal and restarts none. Mutation: serve_model.supervisor
    returning uvicorn's Multiprocess unchanged starts all 50 (and restarts the dead)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess, multiprocess

    import serve_model

    started = []

    class Worker:  # a stand-in for uvicorn's Process: no real process is started
        def __init__(self, config, sockets) -> None:
            self.pid = len(started)

        def start(self) -> None:
            started.append(self)
            if len(started) == 3:  # the operator's SIGTERM, while workers start
                os.kill(os.getpid(), signal.SIGTERM)

        def is_alive(self, timeout: float = 5) -> bool:
            return False  # the signal ended them all

        def kill(self) -> None: ...
        def join(self) -> None: ...
        def terminate(self) -> None: ...

        exitcode = -signal.SIGTERM

    monkeypatch.setattr(multiprocess, "Process", Worker)
    previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = uvicorn.Config("pyimagesearch.serving.serve:app_from_environment", workers=50)
        supervisor = serve_model.supervisor(Multiprocess)(config, sockets=[])
        supervisor.init_processes()
        supervisor.keep_subprocess_alive()  # a dead worker after the signal: no restart
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert len(started) == 3


# --- which model answers: --expect-sha256, the short hash, verify ----------------------


@pytest.fixture(scope="module")
def swapped_pair(tmp_path_factory) -> tuple[Path, Path]:
    """An honest model file, and a copy whose stored float network is another network of
    the same shapes, with the manifest's SHA-256 rewritten (the probe's disguise)."""
    import json
    import zipfile

    import keras

    from pyimagesearch.core import compiled
    from pyimagesearch.training.serialization import save_model
    from tests.test_safety import METADATA

    folder = tmp_path_factory.mktemp("swap")
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        network = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(4, 3),
                                    keras.layers.GlobalAveragePooling2D(),
                                    keras.layers.Dense(2, activation="softmax")])  # fmt: skip
        paths.append(folder / f"model{seed}.keras")
        save_model(network, paths[-1], METADATA, compiled=True)
    honest, other = paths
    swapped = folder / "swapped.keras"
    with (
        zipfile.ZipFile(honest) as source,
        zipfile.ZipFile(other) as donor,
        zipfile.ZipFile(swapped, "w") as archive,
    ):
        manifest = compiled.read_manifest(source)
        for info in source.infolist():
            if info.filename in (compiled.IR_XML, compiled.IR_BIN):
                data = donor.read(info.filename)
                manifest["sha256"][info.filename] = compiled.sha256_bytes(data)
                archive.writestr(info, data)
            elif info.filename != compiled.MANIFEST:
                archive.writestr(info, source.read(info.filename))
        archive.writestr(compiled.MANIFEST, json.dumps(manifest, indent=2))
    return honest, swapped


def test_verify_catches_a_swapped_network(swapped_pair, capsys):
    """The probe: another network of the same shapes swapped into the file, with the
    manifest rewritten, answered for load_model.py and serve_model.py, silently. verify
    runs the stored network and the Keras model (from the weights) on built-in probe
    images: the honest file agrees (exit 0), the swapped one is named (exit 1).
    Mutation: compare() judging against a tolerance of 1.0 passes the swapped file."""
    from pyimagesearch import verify
    from pyimagesearch.core.errors import run_command

    honest, swapped = swapped_pair
    assert run_command(verify.main, ["--model", str(honest)]) == 0
    out = capsys.readouterr()
    assert "32 built-in probe images" in out.out
    assert "stored float32 network against Keras" in out.out and ": agrees" in out.out
    assert "no stored int8 network is run" in out.out
    assert run_command(verify.main, ["--model", str(swapped)]) == 1
    err = capsys.readouterr().err
    assert "it is not the network of these weights" in err, err


def test_expect_sha256_refuses_the_swapped_file_everywhere(swapped_pair, tmp_path: Path):
    """A user who keeps the model's SHA-256 pins it: load_model.py, serve_model.py and
    export refuse any other file (one line, exit 2; the first two with TensorFlow
    unimportable, so before it would start), and
    load_model.py's summary line shows the short hash of the file it runs. Mutations:
    check_sha256 ignoring EXPECTED runs the swapped file; describe() without the hash
    fails the summary check."""
    from pyimagesearch.core.modelfile import file_sha256
    from tests.conftest import without_tensorflow, write_image
    from tests.test_safety import refused

    honest, swapped = swapped_pair
    pin = file_sha256(honest)
    images = tmp_path / "images"
    write_image(images / "a.png")
    commands = {
        "load_model.py": [*without_tensorflow("load_model.py"), "-i", str(images), "-n", "0"],
        "serve_model.py": [*without_tensorflow("serve_model.py"), "--port", "0"],
        "export": [
            "-m",
            "pyimagesearch.export",
            "--format",
            "onnx",
            "--output",
            str(tmp_path / "exported"),
        ],  # fmt: skip
    }
    for name, command in commands.items():
        result = run_capped(*command, "--model", str(swapped), "--expect-sha256", pin,
                            timeout=120)  # fmt: skip
        assert result.returncode == 2, name
        refused(result, f"not the {pin[:12]}... --expect-sha256 names")
    assert not (tmp_path / "exported").exists()
    result = run_capped(*commands["load_model.py"], "--model", str(honest),
                        "--expect-sha256", pin, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"model: SHA-256 {pin[:12]}, classes" in result.stdout


# --- splitting: bounded patterns, refusals that say what happened ----------------------


def image_folders(root: Path, classes: dict[str, list[str]]) -> Path:
    """Class folders of tiny real PNGs with the given file names."""
    from tests.conftest import write_image

    for name, files in classes.items():
        for i, file_name in enumerate(files):
            write_image(root / name / file_name, size=(8, 8), seed=i)
    return root


def build_refusal(argv: list[str]) -> str:
    """build_dataset's one-line refusal of ARGV, run in this process."""
    from pyimagesearch import build_dataset
    from pyimagesearch.core.errors import UserError

    with pytest.raises(UserError) as refused_with:
        build_dataset.main(argv)
    return str(refused_with.value)


def test_a_backtracking_group_pattern_is_stopped(tmp_path: Path):
    """The probe: --group-pattern '^(a+)+$' over names like aaaa...a_catsN.png gave no
    answer in 60 s (catastrophic backtracking in Python's re). Patterns now run on the
    regex engine, which answers that one at once and stops any other search at a time
    bound per name: '^(a|aa)+$', which regex too backtracks on, is one line, exit 2,
    in seconds. Mutation: group_of searching without the timeout hangs (the test's
    timeout fails it)."""
    from tests.test_safety import refused

    names = {c: [f"{'a' * 40}_{c}{i}.png" for i in range(6)] for c in ("cats", "dogs")}
    source = image_folders(tmp_path / "src", names)
    result = run_capped("-m", "pyimagesearch.build_dataset", "--source", str(source),
                        "--output", str(tmp_path / "out"), "--group-pattern", "^(a|aa)+$",
                        timeout=60)  # fmt: skip
    refused(result, "took more than 0.25 s on the file name")


def test_fractions_and_patterns_that_would_give_a_wrong_split_are_refused(tmp_path: Path):
    """The probe: --fractions nan nan nan put everything in training, 0.5 0.5 nan left
    testing empty; a pattern without a capture group, or one that puts every file of a
    class in one group, left validation and testing at 0/0; '()' "matched none" of the
    names it matched. All exit 0 then; now each is one line naming what happened.
    Mutations: the old fractions check (f <= 0 or abs(sum - 1) > 1e-6) lets NaN through;
    dropping the capture-group check, the empty-group message, or check_splits_filled in
    fraction_split fails the matching assertion."""
    names = {c: [f"{c}{i}.png" for i in range(6)] for c in ("a", "b")}
    source = str(image_folders(tmp_path / "src", names))
    argv = ["--source", source, "--output", str(tmp_path / "out")]
    for fractions in (["nan", "nan", "nan"], ["0.5", "0.5", "nan"], ["inf", "0.5", "0.5"]):
        assert "add up to 1" in build_refusal([*argv, "--fractions", *fractions])
    assert "has no capture group" in build_refusal([*argv, "--group-pattern", "png"])
    message = build_refusal([*argv, "--group-pattern", "()"])
    assert "matches 12 of the 12 file names, but its capture group is empty" in message
    message = build_refusal([*argv, "--group-pattern", r"^(\w)"])
    assert "puts the 12 files in 2 group(s), and none went to the validation split" in message
    assert not (tmp_path / "out").exists()


def test_a_thousand_one_image_classes_are_refused_for_what_they_are(tmp_path: Path):
    """The probe: 1,000 classes of one image each were refused as "too few images for a
    validation split of 10%". Now the message says the classes hold one image each and
    how many a class needs. Mutation: check_splits_filled without the class-size case
    gives the old words."""
    source = image_folders(tmp_path / "src", {f"c{i:04d}": ["x.png"] for i in range(1000)})
    message = build_refusal(["--source", str(source), "--output", str(tmp_path / "out")])
    assert "the 1000 images are in 1000 classes of 1-1 image(s) each" in message, message
    assert "a class needs about 10 images" in message


def test_control_characters_in_class_names_never_reach_a_csv_raw(tmp_path: Path):
    """The probe: class names with ESC, CR and BEL reached load_model.py's CSV header
    and labels raw (a terminal showing the file runs the escape; CR breaks rows). Now
    every text cell is written with its control characters as \\xNN. Mutation:
    safety.csv_row returning the values unchanged fails this."""
    import csv

    import keras

    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.training.serialization import save_model
    from tests.conftest import without_tensorflow, write_image

    names = ["ok\x1b[31m", "b\rc\x07"]
    model = tmp_path / "odd.keras"
    network = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    save_model(network, model, {"class_names": names, "preprocessing": default_recipe((32, 32))},
               compiled=True)  # fmt: skip
    images = tmp_path / "images"
    for i in range(3):
        write_image(images / f"{i}.png", seed=i)
    table = tmp_path / "out.csv"
    result = run_capped(*without_tensorflow("load_model.py"), "-m", str(model), "-i",
                        str(images), "-n", "0", "--csv", str(table), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = table.read_bytes()
    assert b"\x1b" not in data and b"\x07" not in data
    assert data.replace(b"\r\n", b"").count(b"\r") == 0
    rows = list(csv.reader(table.open(newline="")))
    assert rows[0] == ["path", "label", "p_ok\\x1b[31m", "p_b\\x0dc\\x07"]
    assert len(rows) == 4 and all(len(row) == 4 for row in rows)
    assert {row[1] for row in rows[1:]} <= {"ok\\x1b[31m", "b\\x0dc\\x07"}


def test_quantize_names_every_image_it_skips(tmp_path: Path, capsys):
    """The probe: quantize dropped unreadable calibration images without naming them.
    Mutation: calibration_set without its warn_skipped call fails this."""
    from pyimagesearch.core.preprocessing import default_recipe
    from pyimagesearch.quantize import calibration_set
    from tests.conftest import write_image

    for i in range(4):
        write_image(tmp_path / f"good{i}.png", seed=i)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing more")
    (tmp_path / "empty.jpg").write_bytes(b"")
    names, batches = calibration_set(str(tmp_path), default_recipe((32, 32)), 300, 0)
    assert len(batches) == 4
    err = capsys.readouterr().err
    for name in ("broken.png", "empty.jpg"):
        assert f"skipping unreadable image '{tmp_path / name}'" in err, err
    assert "skipped 2 unreadable file(s)" in err


def test_sigterm_ends_the_server_and_every_worker(tmp_path: Path, model_file: Path):  # noqa: F811
    """A live server of two workers, stopped as a service manager stops it (SIGTERM to
    the supervisor): it exits within 30 s and no process of its session is left.
    Mutation: Supervisor.stop neither flagging nor queueing the signal leaves it
    running (the wait fails)."""
    import time

    from pyimagesearch.serving.server_process import wait_until_ready

    log = tmp_path / "server.log"
    command = [sys.executable, "serve_model.py", "--model", str(model_file), "--port", "0",
               "--precision", "float32", "--workers", "2"]  # fmt: skip
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_ready(process, log, 180)
        process.terminate()
        process.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the workers end as the supervisor joins them
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("a worker outlived the server")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text()
