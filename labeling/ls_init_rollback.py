"""Undoing the Label Studio project a failed ``radloop ls init`` created, unless someone may use it already.

Two workspaces that run ``ls init`` against one server with the same title race: while the first checks
storage and serving for the project it has just created, the second finds that project by title and binds to
it.  The first must then not delete it on failure.  Label Studio keeps no record of bindings, so "untouched"
is judged from what another workspace's ``ls init`` or use leaves behind: tasks, a storage (another workspace's
media folder), a changed title or labelling config.  One that binds with ``--media-url`` and has pushed no task
yet leaves no trace, and a binding made between this check and the deletion is not seen either.
"""

from __future__ import annotations

from radloop.labeling.ls_client import LabelStudioClient, ProjectNotFoundError
from radloop.labeling.ls_config import config_digest

__all__ = ["add_to_message", "remove_created_project"]


def add_to_message(error: BaseException, note: str) -> None:
    """Append ``note`` to what ``str(error)`` prints (what the CLI shows), keeping its type and traceback.

    An error whose message is not a single string (an ``OSError`` built from errno, strerror and file name)
    gets the note as a PEP 678 note instead: tracebacks show it, and ``radloop ls init`` prints it.
    """
    if len(error.args) == 1 and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]}; {note}",)
    else:
        error.add_note(note)


def _why_in_use(client: LabelStudioClient, project_id: int, *, title: str, digest: str,
                storage_id: int | None) -> str | None:
    """Why project ``project_id`` may be used by someone else since it was created (None: untouched).

    ``storage_id``: the local-files import storage this ``ls init`` added (None: it added none).
    """
    project = client.get_project(project_id)
    tasks = project.get("task_number")
    if tasks is None:
        return "Label Studio did not say how many tasks it has"
    if tasks:
        return f"it has {tasks} task(s)"
    if project["title"] != title or config_digest(project["label_config"]) != digest:
        return "its title or labelling config was changed"
    others = [storage for storage in client.list_storages(project_id)
              if (storage["direction"], storage["type"], storage["id"]) != ("import", "localfiles", storage_id)]
    if others:
        named = ", ".join(f"{storage['direction']} {storage['type']} {storage['id']}" for storage in others)
        return f"it has a storage this `ls init` did not add ({named})"
    return None


def remove_created_project(client: LabelStudioClient, project_id: int, *, title: str, digest: str,
                           storage_id: int | None, error: Exception) -> None:
    """Delete the project an ``ls init`` created before failing with ``error`` (Label Studio deletes its
    storages with it) if it is still untouched, and say in ``error`` what became of it.

    ``digest``: the labelling config's digest this ``ls init`` created it with; ``storage_id``: the storage it
    added (None: none).  A project found in use, or one whose state cannot be read, is kept (another
    workspace's ``ls init`` may have bound to it meanwhile); a failed deletion names the id to delete by hand.
    """
    try:
        reason = _why_in_use(client, project_id, title=title, digest=digest, storage_id=storage_id)
    except ProjectNotFoundError:
        reason = None  # already gone: nothing left to keep for anyone
    except Exception as failure:  # the original error matters more; deleting unchecked could hit another's project
        reason = f"whether it is untouched could not be checked ({failure})"
    if reason is not None:
        add_to_message(error, f"the project it created was kept (Label Studio project {project_id}, {title!r}) "
                              f"because {reason}: another workspace's `ls init` may have bound to it meanwhile; fix "
                              "the cause and rerun `radloop ls init` (it reuses the project), or delete the project in "
                              "Label Studio if nothing uses it")
        return
    try:
        client.delete_project(project_id)
    except ProjectNotFoundError:
        pass  # already gone (a retried delete whose first answer was lost)
    except Exception as failure:  # the original error matters more: keep it, say what is left to do
        add_to_message(error, f"the project it created could not be removed ({failure}): delete Label Studio "
                              f"project {project_id} ({title!r}) by hand, or fix the cause and rerun `radloop ls "
                              "init`, which reuses it")
        return
    add_to_message(error, f"the project it created was removed (Label Studio project {project_id}, {title!r}): fix "
                          "the cause and rerun `radloop ls init`")
