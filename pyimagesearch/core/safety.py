"""What the commands may read and write, in one place.

Every command checks its paths here before any work, so that no argument can make a
tool destroy a file the user owns, read a device or FIFO forever, or decode an image
bigger than memory:

- an output may not be, or be inside, an input (nor hold one), and two outputs of
  one command may not be the same file;
- an output that exists must be a regular file (or, for folder outputs, a folder);
- outputs are written under a temporary name beside the target and renamed into
  place (:func:`replacing`), so a failed run leaves an earlier file as it was;
- only regular files are read as images (:func:`usable_images`) or models, and an
  image is decoded only when its header declares at most ``MAX_PIXELS`` pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import socket
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, BinaryIO

from pyimagesearch.core import report
from pyimagesearch.core.errors import UserError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() and int(value) > 0 else default


# Decoded pixels per image. A 6000x6000 photo (36 M) is fine; decoding takes 3 bytes per
# pixel and resizing 12 more, so the default keeps one image under about 750 MB.
# Raise with --max-pixels or $PYIMAGESEARCH_MAX_PIXELS.
MAX_PIXELS = _env_int("PYIMAGESEARCH_MAX_PIXELS", 50_000_000)
# Side of the model's square input (--image-size, and the size a saved recipe asks for):
# every image becomes side x side x 3 float32 in memory, 12 MB at 1024.
# Raise with $PYIMAGESEARCH_MAX_INPUT_SIDE.
MAX_INPUT_SIDE = _env_int("PYIMAGESEARCH_MAX_INPUT_SIDE", 1024)
# The JSON metadata inside a model is a few kilobytes; anything bigger is not ours.
MAX_METADATA_BYTES = 1 << 20
# Keras' own config.json of this ResNet is about 100 KB.
MAX_CONFIG_BYTES = 16 << 20
# The image formats every command reads (by name; the decoder checks the content).
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def figure_suffixes() -> tuple[str, ...]:
    """Suffixes matplotlib can save a figure as (--plot, --confusion), asked of matplotlib."""
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(f".{name}" for name in FigureCanvasBase.get_supported_filetypes())


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file, or a symlink to one; False for devices, FIFOs, sockets."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _same_or_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_paths(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, object]) -> None:
    """Refuse an output that is, is inside, or holds an input, or that another output names.

    Keys are the option names used in messages (e.g. "--csv"); an input value may be a
    path or a list of paths, and None entries are ignored.
    """
    resolved_inputs: list[tuple[str, str, Path]] = []
    for flag, value in inputs.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                resolved_inputs.append((flag, str(item), Path(item).resolve()))
    seen: dict[Path, str] = {}
    for flag, value in outputs.items():
        if value is None:
            continue
        target = Path(value).resolve()
        if target in seen:
            raise UserError(f"{flag} and {seen[target]} name the same file '{value}'")
        seen[target] = flag
        for input_flag, text, source in resolved_inputs:
            if target == source:
                raise UserError(f"{flag} '{value}' is {input_flag} '{text}'; it would be replaced")
            if _same_or_inside(target, source):
                raise UserError(f"{flag} '{value}' is inside {input_flag} '{text}'")
            if _same_or_inside(source, target):
                raise UserError(f"{flag} '{value}' holds {input_flag} '{text}'")


def check_output_file(path: str | Path, flag: str, suffixes: Sequence[str] | None = None) -> None:
    """Refuse, before any work, an output file we could not or should not write."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} '{path}' must end in {', '.join(suffixes)}")
    if path.exists() or path.is_symlink():
        if path.is_dir():
            raise UserError(f"{flag} '{path}' is a folder; give a file name")
        if not is_regular_file(path):
            raise UserError(f"{flag} '{path}' exists and is not a regular file; refusing it")
    _check_parent(path, flag)


def check_output_folder(path: str | Path, flag: str) -> None:
    """Refuse an output folder that is a file (or a device) or whose parent is unwritable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} '{path}' exists and is not a folder")
    _check_parent(path, flag)


def _check_parent(path: Path, flag: str) -> None:
    """The folder PATH is written into (under a temporary name first) must be writable."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise UserError(f"cannot write {flag} '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {flag} '{path}': folder '{folder}' is not writable")


# This host's name as it appears in temporary names (no path separators, no oddities).
HOST = re.sub(r"[^\w.-]", "_", socket.gethostname()) or "localhost"


def _boot_id() -> str:
    """This boot's id (Linux), so that a temporary from before a reboot is known dead."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().replace("-", "")[:8] or "0"
    except OSError:
        return "0"


BOOT = _boot_id()
_counter = itertools.count()


def process_start(pid: int) -> str:
    """When process PID started (clock ticks since boot, Linux), "0" where unknown: a pid
    that is alive but started at another time is a new process, not the writer."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def temporary_prefix(path: Path, kind: str = "writing") -> str:
    """Start of the temporary name a write uses beside PATH.

    It carries the host's name: on shared storage (multi-worker training) other hosts
    write beside us, and their process ids mean nothing here."""
    return f".{path.name}.{kind}.{HOST}."


def _seal(prefix: str, fields: str, suffix: str) -> str:
    """The digest that proves a temporary's name was made by :func:`temporary_name`."""
    text = "\0".join(("pyimagesearch temporary", prefix, fields, suffix))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def temporary_name(path: Path, kind: str = "writing", suffix: str | None = None) -> Path:
    """A new temporary name beside PATH whose owner can be proven.

    ``.NAME.KIND.HOST.PID.BOOT.START.N.SEAL SUFFIX``: the writer's process id, boot and
    start time, a counter, and a digest of all of them. A file a user made (or another
    tool) does not carry a valid digest, so :func:`remove_stale_temporaries` never takes
    it for ours, whatever it is called.
    """
    prefix = temporary_prefix(path, kind)
    suffix = path.suffix if suffix is None else suffix
    pid = os.getpid()
    fields = f"{pid}.{BOOT}.{process_start(pid)}.{next(_counter)}"
    return path.parent / f"{prefix}{fields}.{_seal(prefix, fields, suffix)}{suffix}"


_FIELDS = re.compile(r"(\d+)\.(\w+)\.(\d+)\.(\d+)\.([0-9a-f]{16})(.*)", re.ASCII | re.DOTALL)


def _writer_gone(pid: int, boot: str, start: str) -> bool:
    """Is the process that wrote a temporary gone (its pid free, reused, or a reboot)?"""
    if boot != BOOT:
        return True
    if pid != os.getpid() and not process_alive(pid):
        return True
    now = process_start(pid)
    return "0" not in (start, now) and now != start


def remove_stale_temporaries(path: Path, kind: str = "writing") -> None:
    """Delete temporaries left beside PATH by a writer that was killed (SIGKILL, power
    loss), and nothing else.

    A leftover is deleted only when all of these hold: its name is one
    :func:`temporary_name` made (its digest checks), for this host; it is a regular file
    (not a folder, not a symbolic link) owned by this user; and its writer is gone (its
    process ended, its pid now belongs to a process started at another time, or the
    machine was rebooted since). Another host's file is never touched: it may be a write
    in progress. Names are compared as text, so no character in PATH acts as a pattern.
    """
    prefix = temporary_prefix(path, kind)
    try:
        with os.scandir(path.parent) as entries:
            candidates = [entry for entry in entries if entry.name.startswith(prefix)]
    except OSError:
        return
    for entry in candidates:
        match = _FIELDS.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        pid, boot, start, count, seal, suffix = match.groups()
        if seal != _seal(prefix, f"{pid}.{boot}.{start}.{count}", suffix):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                continue
            if _writer_gone(int(pid), boot, start):
                os.unlink(entry.path)
        except FileNotFoundError:  # another writer swept it first
            continue


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OverflowError:  # no such pid on this system
        return False
    return True


def _finish(temporary: Path, path: Path) -> None:
    """Flush TEMPORARY to disk, give it the usual mode and rename it over PATH."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o666 & ~_umask())
    os.replace(temporary, path)


@contextlib.contextmanager
def replacing(path: str | Path, kind: str = "writing", suffix: str | None = None) -> Iterator[Path]:
    """The one atomic writer: yield a temporary path beside PATH (same suffix, so writers
    such as Keras, matplotlib and OpenCV pick the same format); on success rename it over
    PATH, on any failure delete it and leave PATH as it was.

    The name proves its owner (:func:`temporary_name`), so a write killed by SIGKILL is
    swept by the next write to PATH and no file of anyone else's ever is. A failed write
    (full disk, permissions) becomes a UserError, never a false "written".
    """
    path = Path(path)
    remove_stale_temporaries(path, kind)
    temporary = temporary_name(path, kind, suffix)
    try:
        # Created here, exclusively and private, so the writer fills our own file.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield temporary
        _finish(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write '{path}': {error.strerror or error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _anonymous_file(folder: Path) -> int | None:
    """A nameless file in FOLDER (Linux O_TMPFILE), or None where the OS or file system
    has none: a writer killed while it writes one leaves nothing behind."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_RDWR, 0o666 & ~_umask())
    except OSError:  # EOPNOTSUPP, EISDIR on old kernels, ...
        return None


@contextlib.contextmanager
def open_replacing(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Like :func:`replacing`, for writers that take an open file (CSV, JSON, zip): the
    file has no name until it is complete (O_TMPFILE, then linkat), so even SIGKILL leaves
    nothing beside PATH. Elsewhere it falls back to :func:`replacing`'s named temporary.
    ``mode`` and ``kwargs`` are :func:`open`'s ("w", "wb", newline="", ...)."""
    path = Path(path)
    fd = _anonymous_file(path.resolve().parent) if "w" in mode else None
    if fd is None:
        with replacing(path) as temporary, open(temporary, mode, **kwargs) as handle:
            yield handle
        return
    try:
        with open(fd, mode, closefd=False, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(fd)
            # linkat cannot replace a file, so the finished file gets a provable name for
            # the instant before the rename.
            temporary = temporary_name(path)
            folder = os.open(temporary.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:  # with dir fds Python calls linkat(AT_SYMLINK_FOLLOW), not link()
                os.link(f"/proc/self/fd/{fd}", temporary.name, src_dir_fd=folder,
                        dst_dir_fd=folder, follow_symlinks=True)  # fmt: skip
            finally:
                os.close(folder)
            try:
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
    except OSError as error:
        raise UserError(f"cannot write '{path}': {error.strerror or error}") from None
    finally:
        os.close(fd)


# Control characters (C0, DEL, C1): ESC starts a terminal escape sequence, CR rewrites a
# line, BEL rings. A class name is a folder name, and may hold any of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """TEXT with each control character written as ``\\xNN``: a user's class name or file
    name never corrupts a CSV file, nor a terminal that shows it."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def csv_row(values: Iterable[object]) -> list[object]:
    """A CSV row with every text value :func:`printable`."""
    return [printable(value) if isinstance(value, str) else value for value in values]


def write_text(path: str | Path, text: str) -> None:
    """Replace PATH with TEXT atomically (:func:`open_replacing`)."""
    with open_replacing(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def replace_folder(staging: Path, output: Path) -> None:
    """Put the finished STAGING folder at OUTPUT; an earlier OUTPUT is removed only after.

    Callers check first that OUTPUT, if it exists, is theirs to replace.
    """
    trash = None
    if output.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
        os.replace(output, trash / output.name)
    os.replace(staging, output)
    if trash is not None:
        shutil.rmtree(trash)


def foreign_entry(folder: str | Path, owned: Callable[[str], bool]) -> str | None:
    """The first entry of FOLDER, at any depth, that OWNED does not accept, or None.

    OWNED gets each entry's path relative to FOLDER in POSIX form, a folder's with a
    trailing "/" ("variables/", "variables/variables.index"); the entries of a folder are
    looked at only when the folder itself is accepted. A symbolic link, a device, a FIFO
    or a socket is never accepted, whatever its name: ``--overwrite`` replaces a folder
    only when every file in it is one the tool writes.
    """
    pending = [(Path(folder), "")]
    while pending:
        current, prefix = pending.pop()
        with os.scandir(current) as entries:
            found = sorted(entries, key=lambda entry: entry.name)
        for entry in found:
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not owned(relative + "/"):
                    return relative + "/"
                pending.append((Path(entry.path), relative + "/"))
            elif not entry.is_file(follow_symlinks=False) or not owned(relative):
                return relative
    return None


def check_own_folder(
    path: str | Path,
    flag: str,
    marker: str,
    owned: Callable[[str], bool],
    overwrite: bool = True,
    replaced: Sequence[str] | None = None,
) -> None:
    """May this command write into PATH? The one rule for output folders (see
    docs/reliability.md), judged before any work.

    A new or empty folder is always fine. Otherwise what the command replaces (the whole
    folder, or its REPLACED entries, e.g. the dataset's split folders) must be an earlier
    output of this tool: MARKER inside PATH, and every entry, at any depth, one OWNED
    accepts (see :func:`foreign_entry`). Without ``overwrite`` even an earlier output is
    refused (the tool asks for --overwrite); a file of the user's is always refused, by
    name.
    """
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{flag} '{path}' is a symbolic link; give a real folder")
    check_output_folder(path, flag)
    if not path.is_dir():
        return
    if replaced is None:
        targets = [path] if any(path.iterdir()) else []
    else:
        targets = [path / name for name in replaced if os.path.lexists(path / name)]
    if not targets:
        return
    if not overwrite:
        raise UserError(f"{flag} '{targets[0]}' already exists; pass --overwrite to replace it")
    if not (path / marker).is_file() or (path / marker).is_symlink():
        raise UserError(
            f"{flag} '{path}' is not empty and was not written by this tool (it has no "
            f"{marker}); give a new or empty folder"
        )
    for target in targets:
        if target.is_symlink() or not target.is_dir():
            raise UserError(f"{flag} '{target}' is not a folder this tool wrote")
        entry = foreign_entry(target, lambda name: name == marker or owned(name))
        if entry is not None:
            raise UserError(
                f"{flag} '{target}' holds '{entry}', which this tool did not write; move it "
                "away or give another folder"
            )


@contextlib.contextmanager
def staged_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside PATH; on success it replaces PATH (which callers checked
    with :func:`check_own_folder`), on any failure it is deleted and PATH left as it was."""
    path = Path(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.resolve().parent))
    try:
        yield staging
        staging.chmod(0o777 & ~_umask())
        replace_folder(staging, path)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write '{path}': {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def image_pixels(path: str | BinaryIO) -> int | None:
    """Pixels the file's header declares, or None when it is not an image we know.

    Pillow reads only the header here (no decoding), so a 49 KB PNG declaring
    20000x20000 costs nothing to measure. PATH may be an open binary file (the
    server's uploads are bytes).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our own bound replaces Pillow's bomb warning
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as image:
                    width, height = image.size
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Exception:  # Pillow raises many types for files that are not images
        return None
    return width * height


def usable_images(
    paths: Iterable[str], check_headers: bool = True, max_pixels: int = MAX_PIXELS
) -> list[str]:
    """The paths that are safe to decode; the others are named in a warning and skipped.

    Skipped: anything that is not a regular file (a FIFO would hang, /dev/zero would
    fill memory), names TensorFlow cannot take (not UTF-8), and images whose header
    declares more than MAX_PIXELS pixels (``max_pixels``; unless ``check_headers`` is False: copying
    files needs no decoding).
    """
    kept, skipped = [], []
    for path in paths:
        reason = None
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            reason = "its name is not valid UTF-8"
        if reason is None and not is_regular_file(path):
            reason = "not a regular file"
        if reason is None and check_headers:
            # A header Pillow cannot read is left to the decoder, which skips and names
            # the file with the other unreadable ones.
            pixels = image_pixels(path)
            if pixels is not None and pixels > max_pixels:
                reason = (
                    f"{pixels:,} pixels, more than the bound of {max_pixels:,} "
                    "(raise it with --max-pixels)"
                )
        if reason is None:
            kept.append(path)
        else:
            skipped.append((path, reason))
    for path, reason in skipped[:20]:
        report.warning(f"skipping '{path}': {reason}")
    if len(skipped) > 20:
        report.warning(f"... and {len(skipped) - 20} more")
    if skipped:
        report.warning(f"skipped {len(skipped)} file(s) before decoding")
    return kept
