"""The workspace: one folder holding the catalog, renders, embeddings, models and rounds.

Resolution order for every command: ``--workspace`` > ``RADLOOP_WORKSPACE`` > ``./radloop-workspace``.
The catalog URL defaults to SQLite inside the workspace; ``RADLOOP_DATABASE_URL`` (read once at start-up)
points it at PostgreSQL for a multi-user site.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

DEFAULT_WORKSPACE = "radloop-workspace"

#: What a refused write's errno means to a user (:func:`write_failure`): the system's words, plainer ones added.
STORAGE_CAUSES = {errno.ENOSPC: "No space left on device (disk full)", errno.EDQUOT: "Disk quota exceeded",
                  errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
                  errno.EPERM: "Operation not permitted"}


@dataclass(frozen=True)
class Workspace:
    """Paths of one radloop workspace.

    Attributes:
        root: the workspace folder (created on demand).
        database_url: SQLAlchemy URL of the catalog.
    """

    root: Path
    database_url: str

    def __post_init__(self) -> None:
        # Workspace("/data/ws", url) from a notebook: a str root would break every path below
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @property
    def renders_dir(self) -> Path:
        return self.root / "renders"

    @property
    def thumbs_dir(self) -> Path:
        return self.root / "thumbs"

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    @property
    def indexes_dir(self) -> Path:
        return self.root / "indexes"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def rounds_dir(self) -> Path:
        return self.root / "rounds"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def ensure(self) -> "Workspace":
        """Create the folder layout (idempotent) and return self."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(20, "the workspace is a file, not a folder", str(self.root))
        if not self.root.exists():  # catalog, report text and renders: readable by the owner only
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700, exist_ok=True)
        for path in (self.root, self.renders_dir, self.thumbs_dir, self.embeddings_dir,
                     self.indexes_dir, self.models_dir, self.rounds_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @cached_property
    def pseudonym_key(self) -> bytes:
        """Per-workspace secret used to derive pseudonymous study ids (HMAC key).

        Stored in ``<root>/secret.key`` with mode 0600 (created whole, see :func:`_create_key_file`); never
        leaves the workspace.

        Raises:
            OSError: the file is empty or damaged (never used as a key), or cannot be read.
        """
        path = self.root / "secret.key"
        if not path.exists():
            if not self.root.exists():
                self.ensure()  # private to the owner, like every new workspace
            _create_key_file(path)
        text = path.read_text().strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) < 16:  # an empty or damaged file must never become a guessable HMAC key
            # an OSError naming the file: the CLI shows it as one line
            raise OSError(errno.EINVAL, "the workspace's pseudonym key is empty or damaged (not 32+ hex digits); "
                                        "restore it from a backup (a new key would give every study a new id)",
                          str(path))
        return key

    def relative(self, path: Path | str) -> str:
        """Path relative to the workspace root (what the catalog stores for files it owns)."""
        return str(Path(path).resolve().relative_to(self.root.resolve()))

    def absolute(self, relative_path: str) -> Path:
        """Inverse of :meth:`relative`."""
        return self.root / relative_path


def _create_key_file(path: Path) -> None:
    """Write a new random key to ``path``, mode 0600 from its creation, whole or not at all: the key is written
    to a private temporary file that is then linked into place (an existing key, e.g. one another process
    created meanwhile, is kept; a reader never sees a partly written one)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: theirs is the key
        except OSError:  # a file system without hard links: create it in place (O_EXCL keeps an existing one)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return  # another process created it first (the temporary file goes below)
            with os.fdopen(fd, "w") as handle:
                handle.write(temporary.read_text())
    finally:
        temporary.unlink(missing_ok=True)


def write_failure(error: BaseException, path: str | os.PathLike, what: str) -> OSError:
    """An ``OSError`` naming ``path`` and the cause (``No space left on device (disk full)``, ``Read-only file
    system``...) for a write of ``what`` that failed with ``error``: the CLI prints it as one line.

    Libraries rarely say so themselves: numpy's short write is ``OSError('N requested and M written')`` (no errno),
    safetensors raises ``SafetensorError('... No space left on device (os error 28)')``, FAISS a ``RuntimeError``
    and ``torch.save`` ``RuntimeError('[enforce fail ...] unexpected pos ...')``.  Their errno is read from the
    message where it is there (a short write counts as a full disk), else a file system with no space left counts
    as a full disk.
    """
    code = getattr(error, "errno", None)
    if code not in STORAGE_CAUSES:
        text = str(error)
        if re.search(r"\d+ requested and \d+ written", text):  # numpy: the file system took part of it
            code = errno.ENOSPC
        code = next((number for number, words in ((errno.ENOSPC, ("No space left", "os error 28")),
                                                  (errno.EDQUOT, ("quota exceeded", "os error 122")),
                                                  (errno.EROFS, ("Read-only file system", "os error 30")))
                     if any(word in text for word in words)), code)
    if code not in STORAGE_CAUSES and _no_space_left(Path(path)):
        code = errno.ENOSPC
    cause = STORAGE_CAUSES.get(code) or (getattr(error, "strerror", None) or str(error) or type(error).__name__)
    return OSError(code if code in STORAGE_CAUSES else getattr(error, "errno", None) or errno.EIO,
                   f"{cause}: could not write {what}", str(path))


def catalog_write_failure(error: BaseException, workspace: "Workspace", what: str) -> OSError | None:
    """The ``OSError`` (:func:`write_failure`) naming the catalog's file for a database error that says the disk
    is full (SQLite: ``database or disk is full``; PostgreSQL: ``could not extend file ...: No space left on
    device``), None for any other error."""
    text = str(getattr(error, "orig", None) or error)
    if "disk is full" not in text and "No space left" not in text:
        return None
    from sqlalchemy import make_url

    url = make_url(workspace.database_url)
    where = url.database if url.get_backend_name() == "sqlite" and url.database else url.render_as_string()
    return write_failure(OSError(errno.ENOSPC, "No space left on device"), where, what)


def _no_space_left(path: Path) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing folder) has no free block left."""
    for folder in (path, *path.parents):
        try:
            stats = os.statvfs(folder)
        except OSError:
            continue
        return stats.f_bavail == 0
    return False


def resolve_workspace(path: str | os.PathLike | None = None) -> Workspace:
    """Resolve the workspace from an explicit path, the environment, or the default folder."""
    root = Path(path or os.environ.get("RADLOOP_WORKSPACE") or DEFAULT_WORKSPACE).expanduser().resolve()
    url = os.environ.get("RADLOOP_DATABASE_URL") or sqlite_url(root)
    return Workspace(root=root, database_url=url)


def sqlite_url(root: str | os.PathLike) -> str:
    """The URL of a workspace's own SQLite catalog."""
    return f"sqlite:///{Path(root).expanduser().resolve() / 'catalog.sqlite'}"


def local_workspace(path: str | os.PathLike) -> Workspace:
    """A workspace with its own SQLite catalog whatever ``RADLOOP_DATABASE_URL`` says: for the demo and for
    benchmarks, which create and delete their folders and must never write into a site's database."""
    root = Path(path).expanduser().resolve()
    return Workspace(root=root, database_url=sqlite_url(root))
