"""Serving a workspace's images to Label Studio: de-identified renders staged in the media folder, the URLs
tasks use for them, and the check that Label Studio really serves them (see :mod:`radloop.labeling.ls_project`)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from radloop.core.workspace import Workspace
from radloop.labeling.ls_client import AuthenticationError, LabelStudioClient

if TYPE_CHECKING:
    from radloop.labeling.ls_project import ProjectBinding

__all__ = ["check_document_root", "check_local_files", "image_url", "media_dir", "stage_render"]

#: the warnings keep the logger name they had before this module was split out of ``ls_project``
logger = logging.getLogger("radloop.labeling.ls_project")

_SAFE_PNG_KEYS = {"dpi", "gamma", "transparency", "aspect", "srgb"}


def media_dir(workspace: Workspace) -> Path:
    return workspace.root / "labelstudio" / "media"


def stage_render(workspace: Workspace, image_id: str, render_path: str) -> Path:
    """Place the render of ``image_id`` at ``media/<image_id>.png`` (idempotent); returns that path.

    Raises:
        FileNotFoundError: the render is missing.
    """
    source = workspace.absolute(render_path)
    if not source.exists():
        raise FileNotFoundError(f"render of {image_id} missing: {render_path} (re-run ingest)")
    target = media_dir(workspace) / f"{image_id}.png"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image as PILImage

    with PILImage.open(source) as image:
        carries_metadata = bool(set(image.info) - _SAFE_PNG_KEYS) or image.format != "PNG"
        if carries_metadata:  # re-encode pixels only: no text chunks, EXIF or ICC profile leave radloop
            temporary = target.with_suffix(".tmp.png")
            image.convert("L").save(temporary, format="PNG")
            os.replace(temporary, target)
            return target
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def check_document_root(media: Path, document_root: str) -> Path:
    """Check that the local-files ``document_root`` contains the staged renders' folder ``media`` (task URLs are
    relative to it); returns ``media`` relative to it.

    Raises:
        ValueError: it does not, naming both folders.
    """
    root = Path(document_root).resolve()
    folder = media.resolve()
    if not folder.is_relative_to(root):
        raise ValueError(f"the Label Studio document root {document_root} does not contain the workspace's staged "
                         f"images ({media}): the document root (--document-root, the server's "
                         "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) must be a parent folder of the workspace; or serve "
                         "the images with --media-url")
    return folder.relative_to(root)


def image_url(binding: ProjectBinding | None, staged: Path, *, document_root: str | None = None,
              media_url: str | None = None) -> str:
    """The URL a task uses for a staged render (local-files storage or radloop-served).

    Raises:
        ValueError: no document root nor media URL, or a document root that does not contain the render.
    """
    media_url = media_url or (binding.media_url if binding else None)
    if media_url:
        return f"{media_url.rstrip('/')}/{quote(staged.name)}"
    root = document_root or (binding.document_root if binding else None)
    if not root:
        raise ValueError("neither a local-files document root nor a media URL is configured")
    relative = check_document_root(staged.parent, root) / staged.name
    return "/data/local-files/?d=" + quote(relative.as_posix())


def check_local_files(client: LabelStudioClient, media: Path, document_root: str, *,
                      explicit: bool) -> tuple[str, str | None]:
    """Check that Label Studio serves the media folder's files with ``document_root``, as an annotator's
    browser will ask for them; returns ``(document_root, detected)``.

    A probe file is written to ``media``, asked for relative to ``document_root``, then relative to each
    parent of ``media``, and removed.  The server's document root found that way replaces a default one
    (``detected`` is then that root, else None).  A client without ``local_file_status`` is not checked.

    Raises:
        ValueError: serving is disabled on the server; it serves from another root than an explicit
            ``document_root``; or it serves the media folder from no root at all (another machine?).
        radloop.labeling.ls_client.AuthenticationError: the probe was refused (HTTP 401/403) because the
            token is (no longer) accepted: Label Studio answers 403 to unauthenticated requests too.
    """
    status_of = getattr(client, "local_file_status", None)
    if status_of is None:
        return document_root, None
    import secrets

    probe = media.resolve() / f".radloop-serving-check-{secrets.token_hex(4)}.txt"
    probe.write_text("radloop: Label Studio local-files check\n")
    configured = Path(document_root).resolve()
    candidates = [configured] + [root for root in (media.resolve(), *media.resolve().parents) if root != configured]
    seen: list[int] = []
    try:
        for root in candidates:
            status = status_of(probe.relative_to(root).as_posix())
            seen.append(status)
            if status in (401, 403):
                raise _refused_probe(client, status)
            if status == 200:
                break
        else:
            answers = "/".join(str(code) for code in sorted(set(seen)))
            raise ValueError(f"Label Studio at {client.url} cannot serve the renders in {media} (HTTP {answers} "
                             "under every parent folder): run it on this machine with "
                             "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a parent of the workspace, or serve that "
                             "folder yourself and pass --media-url")
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError as error:  # a left-over probe is a harmless text file: never worth failing ls init for
            logger.warning("could not delete the serving check file %s: %s", probe, error)
    if root == configured:
        return document_root, None
    if explicit:
        raise ValueError(f"Label Studio at {client.url} serves local files from {root} (its "
                         f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), not from {document_root}: task images would not "
                         f"open; pass --document-root {root} (or set the variable to it)")
    return str(root), str(root)


def _refused_probe(client: LabelStudioClient, status: int) -> Exception:
    """The error for a local-files probe answered 401/403: Label Studio refuses unauthenticated requests with
    403 as well as serving that is switched off, so the token is checked again to tell which."""
    try:
        client.whoami()
    except AuthenticationError as error:
        return AuthenticationError(f"{error} (the local-files check's HTTP {status} was this refusal, not serving "
                                   "being switched off)")
    if status == 401:
        return ValueError(f"Label Studio at {client.url} refused the local-files check as unauthenticated (HTTP 401) "
                          "although it accepts the API token: does a proxy in front of it drop the Authorization "
                          "header for /data/ URLs?")
    return ValueError(f"Label Studio at {client.url} does not serve local files (HTTP 403; it accepts the API "
                      "token, so serving is switched off): start it with "
                      "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true, or pass --media-url")
