"""Nothing lost (issue 6): killed writers, full disks and overwrites never damage a bundle.

A bundle is written into ``.NAME.tmp-PID-XXXX`` next to its destination and swapped into place in one
atomic step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames with a recoverable backup).
These tests SIGKILL real writer processes (``write_bundle`` in a loop, ``export_model`` and
``quantize_model``) and check that the destination always holds a whole bundle.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgebert
from edgebert.errors import BundleError, OutputExistsError, StorageError
from edgebert.runtime import writer as writer_mod
from edgebert.runtime.bundle import read_manifest, verify_checksums
from edgebert.runtime.manifest import Manifest
from edgebert.runtime.writer import clean_stale, staging_dir, write_bundle

pytestmark = pytest.mark.filterwarnings("ignore::edgebert.errors.EdgebertWarning")


# ---------------------------------------------------------------------------------------- helpers
def fingerprint(root: Path) -> dict[str, str]:
    """sha256 of every file of a bundle (the manifest included)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if p.is_file()}


def assert_whole(root: Path) -> None:
    """``root`` is a complete, consistent bundle."""
    manifest = read_manifest(root)
    verify_checksums(root, manifest)


def leftovers(dest: Path) -> list[Path]:
    return sorted(p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def wait_for(predicate: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the writer exited ({proc.returncode}) before the expected moment:\n{out}")
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)  # reap it: a zombie would still look alive to clean_stale
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def previous(tiny_bundle: Callable[..., Path], tmp_path: Path) -> Path:
    """An existing bundle at the destination, to be overwritten with force=True."""
    dest = tmp_path / "out" / "bundle"
    dest.parent.mkdir()
    shutil.copytree(tiny_bundle("bert", "embedding"), dest)
    return dest


# ---------------------------------------------------------------------------------------- killed writers
LOOP_WRITER = """
import os, shutil, sys
from pathlib import Path
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.writer import write_bundle
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
manifest = read_manifest(src)
i = 0
while True:
    def fill(tmp):
        shutil.copyfile(src / "model.onnx", tmp / "model.onnx")
        shutil.copyfile(src / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "pad.bin").write_bytes(os.urandom(1 << 20) * 4)  # a few MB: a wider window to be killed in
        (tmp / "generation.txt").write_text(str(i))
    write_bundle(dest, manifest, fill, force=True)
    if i == 0:
        print("first", flush=True)
    i += 1
"""


def test_write_bundle_killed_at_random_moments(previous: Path, tmp_path: Path) -> None:
    """SIGKILL a process overwriting a bundle in a loop, 12 times at random moments: always whole."""
    script = tmp_path / "writer.py"
    script.write_text(LOOP_WRITER)
    rng = random.Random(6)
    generations = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(previous), str(previous)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(tmp_path))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"first"
        time.sleep(rng.uniform(0.0, 0.4))
        kill(proc)
        assert_whole(previous)
        generations.add((previous / "generation.txt").read_text())
    assert len(generations) > 1, "the writer never got past its first bundle"
    clean_stale(previous)
    assert leftovers(previous) == [], "clean_stale left staging directories of dead writers"


# Stall as a slow disk would, mid-bundle: every file is in the staging directory, the manifest is not yet
# (the writer checksums the files first). Patched in the writer, whatever the exporter's own code does.
SLOW_DISK = """
import sys, time
import edgebert.runtime.writer as writer
real = writer.sha256_file
def slow(path):
    print("staged", path.parent, flush=True)
    time.sleep(600)
    return real(path)
writer.sha256_file = slow
"""

EXPORT_WRITER = """
import sys
from edgebert.export import export_model
export_model(sys.argv[1], sys.argv[2], task="embedding", optimize="none", force=True, quiet=True)
print("done", flush=True)
"""


def _child_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a writer process that will be SIGKILLed: its temporary directories (export's
    scratch graphs, which a killed process cannot remove) go under the test's ``tmp_path``, not /tmp."""
    scratch = tmp_path / "child-tmp"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(scratch)}


def _export_proc(tmp_path: Path, model: Path, dest: Path, mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "export_writer.py"
    script.write_text((SLOW_DISK if mode == "slow" else "") + EXPORT_WRITER)
    return subprocess.Popen([sys.executable, str(script), str(model), str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(tmp_path))


def test_export_killed_midway_keeps_the_previous_bundle(
    previous: Path, tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    before = fingerprint(previous)
    expected = edgebert.load(previous, threads=1)(["kept intact"])
    proc = _export_proc(tmp_path, tiny_model("bert", "embedding"), previous, "slow")
    staging = wait_for(lambda: [p for p in leftovers(previous) if (p / "model.onnx").exists()], 180, proc)
    kill(proc)
    assert fingerprint(previous) == before, "the previous bundle changed"
    np.testing.assert_array_equal(edgebert.load(previous, threads=1)(["kept intact"]), expected)
    for half in staging:  # the half-written bundle is there, but is never taken for a bundle
        with pytest.raises(BundleError):
            edgebert.load(half)
    # The next write to the same path removes what the killed process left behind.
    from edgebert.export import export_model

    export_model(tiny_model("bert", "embedding"), previous, task="embedding", optimize="none", force=True, quiet=True)
    assert_whole(previous)
    assert leftovers(previous) == []


def test_export_killed_at_a_random_moment(previous: Path, tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    """Unpatched export, killed at a random moment: the destination is the old bundle or a whole new one."""
    before = fingerprint(previous)
    proc = _export_proc(tmp_path, tiny_model("bert", "embedding"), previous, "normal")
    time.sleep(random.Random().uniform(2.0, 9.0))
    kill(proc)
    assert_whole(previous)
    state = "unchanged" if fingerprint(previous) == before else "replaced"
    print(f"[kill] export killed at a random moment: previous bundle {state}")


QUANTIZE_WRITER = SLOW_DISK + """
from edgebert.quantize import quantize_model
quantize_model(sys.argv[1], sys.argv[2], force=True)
print("done", flush=True)
"""


def test_quantize_killed_midway_keeps_the_previous_bundle(
    previous: Path, tiny_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    before = fingerprint(previous)
    expected = edgebert.load(previous, threads=1)(["kept intact"])
    script = tmp_path / "quantize_writer.py"
    script.write_text(QUANTIZE_WRITER)
    source = tiny_bundle("bert", "embedding")
    proc = subprocess.Popen([sys.executable, str(script), str(source), str(previous)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(tmp_path))
    staging = wait_for(lambda: [p for p in leftovers(previous) if (p / "tokenizer.json").exists()], 300, proc)
    kill(proc)
    assert fingerprint(previous) == before, "the previous bundle changed"
    np.testing.assert_array_equal(edgebert.load(previous, threads=1)(["kept intact"]), expected)
    for half in staging:
        with pytest.raises(BundleError):
            edgebert.load(half)
    clean_stale(previous)
    assert leftovers(previous) == []


# ---------------------------------------------------------------------------------------- full disk and errors
def _enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _copy_fill(src: Path) -> Callable[[Path], None]:
    def fill(tmp: Path) -> None:
        shutil.copyfile(src / "model.onnx", tmp / "model.onnx")
        shutil.copyfile(src / "tokenizer.json", tmp / "tokenizer.json")

    return fill


@pytest.mark.parametrize("where", ["fill", "fsync", "manifest", "mkdtemp", "rename"])
def test_disk_full_is_a_storage_error(previous: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = fingerprint(previous)
    manifest = read_manifest(previous)
    fill = _copy_fill(previous)
    if where == "fill":
        def fill(tmp: Path) -> None:
            (tmp / "model.onnx").write_bytes(b"partial")
            _enospc()
    elif where == "fsync":
        monkeypatch.setattr(writer_mod.os, "fsync", _enospc)
    elif where == "manifest":
        monkeypatch.setattr(writer_mod.json, "dump", _enospc)
    elif where == "mkdtemp":
        monkeypatch.setattr(writer_mod.tempfile, "mkdtemp", _enospc)
    else:
        monkeypatch.setattr(writer_mod, "_exchange", _enospc)
    with pytest.raises(StorageError) as info:
        write_bundle(previous, manifest, fill, force=True)
    message = str(info.value)
    assert "disk is full" in message and str(previous) in message, message
    monkeypatch.undo()
    assert fingerprint(previous) == before
    assert leftovers(previous) == []


def _manifest_on_a_full_disk(path: Path, data: Any) -> None:
    path.write_text("{")
    _enospc()


@pytest.mark.parametrize("writer", ["export", "quantize"])
def test_disk_full_during_export_and_quantize(
    previous: Path, writer: str, tiny_model: Callable[..., Path], tiny_bundle: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills up as the manifest is written, after every other file: nothing lost, nothing left."""
    from edgebert.export import export_model
    from edgebert.quantize import quantize_model

    before = fingerprint(previous)
    monkeypatch.setattr(writer_mod, "_dump_json", _manifest_on_a_full_disk)
    with pytest.raises(StorageError, match="disk is full"):
        if writer == "export":
            export_model(tiny_model("bert", "embedding"), previous, task="embedding", optimize="none",
                         force=True, quiet=True)
        else:
            quantize_model(tiny_bundle("bert", "embedding"), previous, force=True)
    assert fingerprint(previous) == before
    assert leftovers(previous) == []


def test_disk_full_on_a_new_path_leaves_nothing(tmp_path: Path, previous: Path) -> None:
    dest = tmp_path / "fresh"

    def fill(tmp: Path) -> None:
        (tmp / "model.onnx").write_bytes(b"x" * 1000)
        _enospc()

    with pytest.raises(StorageError):
        write_bundle(dest, read_manifest(previous), fill)
    assert not dest.exists() and leftovers(dest) == []


# ---------------------------------------------------------------------------------------- overwrite rules
def test_force_never_replaces_something_that_is_not_a_bundle(tmp_path: Path, previous: Path) -> None:
    home = tmp_path / "precious"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match="not an edgebert bundle"):
        write_bundle(home, read_manifest(previous), _copy_fill(previous), force=True)
    assert (home / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "file"
    a_file.write_text("data")
    with pytest.raises(OutputExistsError):
        write_bundle(a_file, read_manifest(previous), _copy_fill(previous), force=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_bundle(empty, read_manifest(previous), _copy_fill(previous), force=True)
    assert_whole(empty)


def test_without_force_an_existing_bundle_is_kept(previous: Path) -> None:
    before = fingerprint(previous)
    with pytest.raises(OutputExistsError):
        write_bundle(previous, read_manifest(previous), _copy_fill(previous))
    assert fingerprint(previous) == before


def test_fallback_swap_without_renameat2(previous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "_exchange", lambda a, b: False)
    manifest = read_manifest(previous)
    data = json.loads((previous / "edgebert.json").read_text())
    write_bundle(previous, Manifest.from_json({**data, "precision": "fallback"}), _copy_fill(previous),
                 force=True)
    assert read_manifest(previous).precision == "fallback" != manifest.precision
    assert_whole(previous)
    assert leftovers(previous) == []


def test_orphaned_backup_is_restored(previous: Path) -> None:
    """Killed between the two renames of the fallback swap: the next write puts the old bundle back."""
    before = fingerprint(previous)
    backup = previous.parent / f".{previous.name}.old-{dead_pid()}-xyz"
    backup.mkdir()
    os.rename(previous, backup / "bundle")
    assert not previous.exists()
    clean_stale(previous)
    assert fingerprint(previous) == before and leftovers(previous) == []


def test_live_writers_are_left_alone(previous: Path) -> None:
    mine = previous.parent / f".{previous.name}.tmp-{os.getpid()}-live"
    mine.mkdir()
    dead = previous.parent / f".{previous.name}.tmp-{dead_pid()}-dead"
    dead.mkdir()
    other = previous.parent / ".unrelated.tmp-1-x"
    other.mkdir()
    assert clean_stale(previous) == [dead]
    assert mine.exists() and other.exists()


def test_staging_dir_removed_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staging_dir(tmp_path / "b") as tmp:
        (tmp / "x").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
