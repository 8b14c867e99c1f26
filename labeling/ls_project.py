"""Which Label Studio project a workspace labels into, and creating/updating it idempotently.

The binding (server URL, project id and title, config digest, how images are served, what the tasks'
report field carries) lives in ``<workspace>/labelstudio/project.json``.  The API token is never stored
there nor anywhere else: commands take it from ``--token`` or the environment each time.

Images reach Label Studio de-identified: only 8-bit renders, copied (hard-linked when possible) to
``<workspace>/labelstudio/media/<image id>.png`` so that the URL carries only the pseudonymous image id,
never an original file name; a render carrying PNG text/EXIF metadata is re-encoded without it.
They are served either by Label Studio's local-files storage (``document_root`` must contain the media
folder and equal the server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``) or from ``media_url``
(staging, URLs and the serving check: :mod:`radloop.labeling.ls_media`).
Report text reaches it as the binding's ``report_text`` says (``redacted`` by default: rule-based
scrubbing, :mod:`radloop.labeling.redact`; ``none``; ``as_stored``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from radloop.core.workspace import Workspace
from radloop.labeling.ls_client import LabelStudioClient, ProjectNotFoundError
from radloop.labeling.ls_config import DEFAULT_REPORT_TEXT, build_label_config, check_report_text, config_digest
from radloop.labeling.ls_init_rollback import remove_created_project
from radloop.labeling.ls_media import (  # noqa: F401  (re-exported: their home was this module)
    _refused_probe, check_document_root, check_local_files, image_url, media_dir, stage_render,
)

__all__ = ["DEFAULT_PROJECT_TITLE", "ProjectBinding", "check_document_root", "check_local_files", "image_url",
           "init_project", "label_studio_url", "load_binding", "media_dir", "repair_image_urls",
           "report_text_setting", "save_binding", "stage_render"]

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_TITLE = "radloop findings"


@dataclass(frozen=True)
class ProjectBinding:
    """The Label Studio project of a workspace (no token).

    ``report_text``: what the tasks' report field carries (``redacted``, ``none`` or ``as_stored``;
    bindings written before the setting existed read as ``redacted``).
    """

    url: str
    project_id: int
    title: str
    config_digest: str
    document_root: str | None = None
    media_url: str | None = None
    storage_id: int | None = None
    report_text: str = DEFAULT_REPORT_TEXT
    #: the title last asked for (``ls init --project``, a round config's ``label_studio_project``); the project
    #: is renamed only when a different one is asked for, so that a rename in Label Studio's UI is kept
    asked_title: str | None = None

    def __post_init__(self) -> None:
        check_report_text(self.report_text)


def binding_path(workspace: Workspace) -> Path:
    return workspace.root / "labelstudio" / "project.json"


def save_binding(workspace: Workspace, binding: ProjectBinding) -> Path:
    path = binding_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(binding), indent=2) + "\n")
    os.replace(temporary, path)
    return path


def load_binding(workspace: Workspace) -> ProjectBinding:
    """The workspace's project binding.

    Raises:
        FileNotFoundError: ``radloop ls init`` has not been run for this workspace.
    """
    path = binding_path(workspace)
    if not path.exists():
        raise FileNotFoundError(f"no Label Studio project bound to workspace {workspace.root}: "
                                "run `radloop ls init --url URL --token TOKEN` first")
    return ProjectBinding(**json.loads(path.read_text()))


def report_text_setting(workspace: Workspace, binding: ProjectBinding | None = None,
                        report_text: str | None = None) -> str:
    """What the tasks' report field carries: ``report_text`` when given, else the binding's (``binding``, else
    the workspace's saved one), else ``redacted``.

    Raises:
        ValueError: an unknown value, or a binding file that cannot be read (rather than guess what the site
            chose to send).
    """
    if report_text is not None:
        return check_report_text(report_text)
    if binding is not None:
        return binding.report_text
    try:
        return load_binding(workspace).report_text
    except FileNotFoundError:
        return DEFAULT_REPORT_TEXT
    except (ValueError, TypeError) as error:
        raise ValueError(f"the workspace's Label Studio binding {binding_path(workspace)} is unreadable ({error}), "
                         "so its report text setting is unknown: rerun `radloop ls init`") from error


def label_studio_url(workspace: Workspace, explicit: str | None = None) -> tuple[str | None, str]:
    """The Label Studio server of a workspace and where that choice came from: ``explicit``, else the server
    ``radloop ls init`` bound the workspace to, else ``$LABEL_STUDIO_URL``; ``(None, "no server configured")``.

    Raises:
        ValueError: the binding file is unreadable (rerun ``radloop ls init``).
    """
    if explicit:
        return explicit.rstrip("/"), "label_studio_url"
    try:
        return load_binding(workspace).url.rstrip("/"), "the workspace's `ls init` binding"
    except FileNotFoundError:
        pass
    except (TypeError, KeyError) as error:
        raise ValueError(str(error)) from error
    env = os.environ.get("LABEL_STUDIO_URL", "").strip()
    if env:
        return env.rstrip("/"), "$LABEL_STUDIO_URL"
    return None, "no server configured"


def _bound_to(workspace: Workspace, url: str, project_id: int) -> bool:
    """Whether the workspace's binding (readable) names project ``project_id`` on ``url``."""
    try:
        bound = load_binding(workspace)
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return False
    return (bound.url, bound.project_id) == (url, project_id)


def repair_image_urls(client: LabelStudioClient, project_id: int, previous: ProjectBinding, media: Path,
                      document_root: str | None, media_url: str | None) -> int:
    """Point the project's radloop tasks at the renders' URLs under the new serving settings when they changed
    (e.g. a wrong document root fixed by a second ``ls init``); returns how many tasks were updated."""
    target = ProjectBinding(url=previous.url, project_id=project_id, title=previous.title,
                            config_digest=previous.config_digest, document_root=document_root, media_url=media_url)
    sample = media / "sample.png"
    try:
        if image_url(previous, sample) == image_url(target, sample) or not hasattr(client, "update_task_data"):
            return 0
    except ValueError:  # the old settings never made URLs for this media folder
        return 0
    repaired = 0
    for task in client.iter_tasks(project_id, with_annotations=False):
        data = task.get("data") or {}
        case_id = data.get("case_id")
        if not (isinstance(case_id, str) and data.get("radloop_key") and isinstance(data.get("image"), str)):
            continue
        staged = media / f"{case_id}.png"
        if Path(case_id).name != case_id or not staged.exists() or data["image"] != image_url(previous, staged):
            continue  # not a case radloop staged (task data are editable), nor a URL it made: left alone
        new = image_url(target, staged)
        if new != data["image"]:
            client.update_task_data(task["id"], {**data, "image": new})
            repaired += 1
    return repaired


def init_project(client: LabelStudioClient, workspace: Workspace, *, title: str | None = None,
                 document_root: str | None = None, media_url: str | None = None,
                 report_text: str | None = None) -> dict:
    """Create or update (idempotent) the workspace's project; returns a summary.

    The project is found by the binding's id (when it still exists on the same server), else by title;
    its labelling config is replaced when the generated one differs.  ``title`` renames a bound project (and is
    saved as the binding's ``asked_title``); None keeps its current title (one chosen earlier or renamed in Label
    Studio's UI), and finds or creates one under the binding's title on the same server, else
    :data:`DEFAULT_PROJECT_TITLE`.  The summary's
    ``config_updated`` and ``title_updated`` say which of the two changed.  ``report_text`` (what tasks carry as
    report: ``redacted``, ``none``, ``as_stored``) is saved in the binding; None keeps the binding's
    setting (``redacted`` for a new one).

    A project created by this call is deleted again (with its storage) when a later step fails (storage
    refused, serving check failed, binding not written): the error then says it was removed, or which
    project id to delete by hand when that failed too.  It is kept, and the error says why, when it is no
    longer untouched (tasks, another storage, a changed title or config: another workspace's ``ls init`` may
    have bound to it meanwhile; :mod:`radloop.labeling.ls_init_rollback`).  A project that existed before is
    never deleted, nor one on interruption (Ctrl-C: left unbound, a warning names it).

    Raises:
        ValueError: the media folder is not under ``document_root``; an unknown ``report_text``; Label Studio
            does not serve the media folder (see :func:`check_local_files`).
        radloop.labeling.ls_client.LabelStudioError: server / token problems.
        OSError: the media folder or the binding cannot be written.
    """
    previous = None
    try:
        previous = load_binding(workspace)
    except FileNotFoundError:
        pass
    except (ValueError, TypeError, KeyError) as error:  # a damaged binding: `ls init` is how it gets repaired
        logger.warning("the Label Studio binding %s is unreadable (%s): it is replaced", binding_path(workspace),
                       error)
        if report_text is None:
            raise ValueError(f"the workspace's Label Studio binding is unreadable ({error}): rerun `radloop ls "
                             "init` with --report-text redacted|none|as_stored to say what tasks may carry") from error
    if report_text is None:
        report_text = previous.report_text if previous else DEFAULT_REPORT_TEXT
    asked = title if title is not None else (previous.asked_title if previous and previous.url == client.url
                                             else None)
    label_config = build_label_config(report_text=check_report_text(report_text))
    digest = config_digest(label_config)
    media = media_dir(workspace)
    media.mkdir(parents=True, exist_ok=True)
    explicit_root = bool(document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"))
    if not media_url:
        document_root = document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") \
            or str(workspace.root)
        check_document_root(media, document_root)
    client.whoami()
    project_id = None
    if previous and previous.url == client.url:
        try:
            project_id = client.get_project(previous.project_id)["id"]
        except ProjectNotFoundError:
            project_id = None
    if project_id is None:
        if title is None:
            title = previous.title if previous and previous.url == client.url else DEFAULT_PROJECT_TITLE
        project_id = client.find_project(title)
    created = config_updated = title_updated = False
    if project_id is None:
        project_id = client.create_project(title, label_config, description="radloop active-learning round tasks")
        created = True
    else:
        current = client.get_project(project_id)
        title = current["title"] if title is None else title
        config_updated = config_digest(current["label_config"]) != digest
        title_updated = current["title"] != title
        if config_updated or title_updated:  # both fields sent: an unchanged one is written back as it is
            client.update_project(project_id, label_config=label_config, title=title)
    storage_id = None
    served_from = None
    try:  # all or nothing for a project created here: a half-configured one must not linger in the UI
        if not media_url:
            storage_id = client.ensure_local_storage(project_id, str(media.resolve()))
            document_root, served_from = check_local_files(client, media, document_root, explicit=explicit_root)
        repaired = 0
        if previous is not None and previous.project_id == project_id and previous.url == client.url:
            repaired = repair_image_urls(client, project_id, previous, media, document_root, media_url)
        binding = ProjectBinding(url=client.url, project_id=project_id, title=title, config_digest=digest,
                                 document_root=str(Path(document_root).resolve()) if document_root else None,
                                 media_url=media_url, storage_id=storage_id, report_text=report_text,
                                 asked_title=asked)
        save_binding(workspace, binding)
    except Exception as error:
        # a binding written before the failure: a project kept with it beats a binding to a deleted one
        if created and not _bound_to(workspace, client.url, project_id):
            remove_created_project(client, project_id, title=title, digest=digest, storage_id=storage_id,
                                   error=error)
        raise
    except BaseException:  # Ctrl-C: no more requests; a rerun finds the project by title and completes it
        if created:
            logger.warning("interrupted: Label Studio project %s (%r), created by this `ls init`, is kept; rerun "
                           "`radloop ls init` (it reuses it) or delete it in Label Studio", project_id, title)
        raise
    return {"project_id": project_id, "title": title, "created": created, "config_updated": config_updated,
            "title_updated": title_updated,
            "url": client.url, "storage_id": storage_id, "media_dir": str(media), "report_text": report_text,
            "binding": str(binding_path(workspace)),
            "document_root": binding.document_root,
            **({"note": f"Label Studio serves local files from {served_from}: used as the document root (set "
                        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT or --document-root to say so)"} if served_from else {}),
            **({"image_urls_repaired": repaired} if repaired else {})}
