"""Files: atomic writes, user arrays (``.npy``) and records (``.jsonl``), the cache folder, the one logger.

Every layer may use this module; it imports nothing of the package but ``errors``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .errors import DenoiselabError


def log(msg: str) -> None:
    """The one logger: a line on stderr, flushed (progress and results go to stderr, data to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def umask() -> int:
    # os.umask can only be read by setting it; set it straight back (the CLI is single-threaded
    # at this point, and every caller writes files itself).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_folder(out: Path, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp_folder) on a fresh folder beside ``out``, then rename it to ``out`` (an empty
    ``out`` is replaced): a reader sees no folder or a whole one; a failure leaves nothing."""
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call write(tmp_path), fsync, then rename over ``path``: readers see the old or the new file.

    mkstemp creates its file with mode 0600; the result gets 0666 & ~umask like any file the user
    writes, so a run directory stays readable on a shared cluster or behind a web server.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_npy(path: Path, array) -> None:
    """np.save through atomic_write (given a file object: np.save would add .npy to a temp name)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    atomic_write(path, write)


def fsync_dir(d: Path) -> None:
    """Make a rename durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


CACHE_ENV = "DENOISELAB_CACHE"


def cache_folder() -> Path:
    """$DENOISELAB_CACHE, else $XDG_CACHE_HOME/denoiselab, else ~/.cache/denoiselab."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "denoiselab"


def read_cache(path: Path, shape: Optional[tuple] = None, dtype=None):
    """A cached array (``.npy`` the project wrote itself), or None when it is missing, unreadable,
    or not of ``shape`` (None entries match any size) and ``dtype``: the caller then computes it
    again and overwrites the file. Never unpickles."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if shape is not None and (arr.ndim != len(shape) or any(w is not None and w != n for w, n in zip(shape, arr.shape))):
        return None
    if dtype is not None and arr.dtype != dtype:
        return None
    return arr


def read_jsonl(path: Path) -> list[dict]:
    """The records of a ``.jsonl`` file (``metrics.jsonl``), skipping blank and unreadable lines
    (a line cut short by a killed process)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def existing_file(path, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    p = Path(path)
    if not p.exists():
        raise DenoiselabError(f"{what} not found: {p} (check the path)")
    if not p.is_file():
        raise DenoiselabError(f"{what} {p} is not a file")
    if suffixes and p.suffix.lower() not in suffixes:
        raise DenoiselabError(f"{what} {p} must be a {' or '.join(suffixes)} file")
    if not os.access(p, os.R_OK):
        raise DenoiselabError(f"{what} {p} is not readable: check its permissions")
    return p


def load_npy(path, what: str, *, ndims: tuple[int, ...] = (), integer: bool = False, booleans: bool = False,
             value_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """A user's .npy, read without pickle (object arrays are refused), its shape, dtype and
    values checked: the one reader of every array a user hands the package (samples, references,
    labels, input images, masks, noise), so every malformed file gets the same one line.
    ``booleans`` also accepts a bool array (masks)."""
    p = existing_file(path, what)
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise DenoiselabError(f"{what} {p} holds several arrays (.npz): save one array with np.save")
    if magic != b"\x93NUMPY":
        raise DenoiselabError(f"{what} {p} is not a .npy file (no NUMPY header): save the array with np.save")
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DenoiselabError(f"{what} {p} holds Python objects (a pickle): save a numeric array with "
                                  "np.save") from None
        raise DenoiselabError(f"{what} {p} is not a valid .npy file ({str(e).splitlines()[0]})") from None
    except (OSError, EOFError) as e:
        raise DenoiselabError(f"{what} {p} cannot be read as .npy ({type(e).__name__}: {e}): is it truncated?") from None
    if not isinstance(a, np.ndarray):
        raise DenoiselabError(f"{what} {p} holds several arrays (.npz): save one array with np.save")
    kinds = ("iu" if integer else "fiu") + ("b" if booleans else "")
    if a.dtype.kind not in kinds:
        raise DenoiselabError(f"{what} {p} has dtype {a.dtype}: expected {'integers' if integer else 'numbers'}")
    if ndims and a.ndim not in ndims:
        raise DenoiselabError(f"{what} {p} has shape {a.shape}: expected {' or '.join(f'{n} dimensions' for n in ndims)}")
    if a.size == 0:
        raise DenoiselabError(f"{what} {p} is empty (shape {a.shape})")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DenoiselabError(f"{what} {p} contains NaN or inf ({int((~np.isfinite(a)).sum())} values)")
    if value_range is not None:
        lo, hi = float(a.min()), float(a.max())
        if lo < value_range[0] or hi > value_range[1]:
            raise DenoiselabError(f"{what} {p} has values in [{lo:g}, {hi:g}], outside {list(value_range)}")
    return a
