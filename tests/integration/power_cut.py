"""A disk whose power can be cut: an ext4 file system on a loop device backed by a file.

What a process writes lands first in the page cache of the mounted file system; only a flush
(`fsync`, `fdatasync`, or the kernel's writeback, which waits 30 s by default) sends it to the
loop device, that is into the backing file. A copy of the backing file is therefore the disk as
it would be found after a power cut: what was made durable is there, what sat in the page cache
is not. `commit=300` keeps ext4's journal from committing on its own every 5 s, which would
write data the process never flushed.

SIGKILL alone proves far less: the page cache survives a killed process, so a server that never
flushed (`PRAGMA synchronous = OFF`) would pass a kill test.

Needs root (losetup, mount) and a free loop device; see `PowerCutUnavailable`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

IMAGE_BYTES = 256 * 1024 * 1024
MOUNT_OPTIONS = "commit=300"


class PowerCutUnavailable(Exception):
    """This machine cannot make the disk: not root, or no loop devices, or no ext4 tools."""


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise PowerCutUnavailable(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


@contextmanager
def mounted(image: Path, mount_point: Path, options: str = MOUNT_OPTIONS) -> Iterator[Path]:
    """`image` on a loop device of its own, mounted at `mount_point`; both undone afterwards."""
    device = _run("losetup", "--find", "--show", str(image))
    try:
        mount_point.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "ext4", "-o", options, device, str(mount_point))
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", str(mount_point)], check=False, timeout=60)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False, timeout=60)


@dataclass
class PowerCutDisk:
    """A mounted file system (`root`) and, after `cut_power()`, its image as the power cut left it."""

    image: Path
    root: Path

    def cut_power(self, into: Path) -> Path:
        """Copy the disk as it is on the device now (not what sits in the page cache), replay its
        journal as the next boot would, and copy its files into `into`; returns `into`."""
        frozen = self.image.with_name(self.image.name + ".after-power-cut")
        _run("cp", "--sparse=always", str(self.image), str(frozen))  # the unwritten blocks stay holes
        with mounted(frozen, self.image.with_name("after-power-cut"), options="rw") as root:
            shutil.copytree(root, into, ignore=shutil.ignore_patterns("lost+found"))
        frozen.unlink()
        return into


@contextmanager
def power_cut_disk(workdir: Path) -> Iterator[PowerCutDisk]:
    if os.geteuid() != 0:
        raise PowerCutUnavailable("a loop-mounted file system needs root")
    for tool in ("losetup", "mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise PowerCutUnavailable(f"{tool} is missing (Debian: mount, e2fsprogs)")
    image = workdir / "disk.img"
    with image.open("wb") as out:
        out.truncate(IMAGE_BYTES)
    _run("mkfs.ext4", "-q", "-F", str(image))
    with mounted(image, workdir / "disk") as root:
        yield PowerCutDisk(image, root)
