"""Walk 22c: a round config's ``label_studio_project`` no longer renames back a project the user renamed in
Label Studio's UI.

The bound project was renamed to the config's name on a start after `radloop ls init` had picked up the UI's
title.  Now the binding remembers the title last asked for (``asked_title``): the project is renamed only when
the config asks for a different name than before.  Offline, against the fake Label Studio of tests/ls_fake.py
with projects that have titles.
"""

from __future__ import annotations

from ls_catalog import build_round_catalog
from ls_fake import PROJECT_ID, FakeLabelStudio, bind_fake


class TitledLabelStudio(FakeLabelStudio):
    """The fake, with project titles that can be read, searched, created and renamed."""

    def __init__(self) -> None:
        super().__init__()
        self.titles = {PROJECT_ID: "radloop findings"}
        self.renames: list[str] = []

    def get_project(self, project_id: int) -> dict:
        from radloop.labeling.ls_client import ProjectNotFoundError

        if project_id not in self.titles:
            raise ProjectNotFoundError(f"project {project_id} not found")
        return {**super().get_project(project_id), "title": self.titles[project_id]}

    def find_project(self, title: str) -> int | None:
        return min((i for i, name in self.titles.items() if name == title), default=None)

    def create_project(self, title: str, label_config: str, description: str = "") -> int:
        project_id = max(self.titles) + 1
        self.titles[project_id] = title
        return project_id

    def update_project(self, project_id: int, **fields) -> None:
        if fields.get("title", self.titles[project_id]) != self.titles[project_id]:
            self.renames.append(fields["title"])
        self.titles[project_id] = fields.get("title", self.titles[project_id])


def test_a_rename_in_label_studio_is_kept_until_the_config_asks_for_another_name(tmp_path, test_catalog_url):
    from radloop.labeling.ls_project import init_project, load_binding
    from radloop.labeling.ls_sync import push_round

    root = tmp_path / "ws"
    catalog, round_id, _ = build_round_catalog(root, n_images=2, database_url=test_catalog_url(root))
    bind_fake(catalog)
    fake = TitledLabelStudio()
    try:
        push_round(catalog, fake, round_id, project="Chest study", with_model=False)  # the config names it
        assert fake.titles[PROJECT_ID] == "Chest study"
        fake.titles[PROJECT_ID] = "Chest study (Dr. A)"  # renamed in Label Studio's UI
        init_project(fake, catalog.workspace, media_url="https://media.test/")  # `ls init`: keeps the UI's title
        assert load_binding(catalog.workspace).title == "Chest study (Dr. A)"

        push_round(catalog, fake, round_id, project="Chest study", with_model=False)  # the next start
        assert fake.titles[PROJECT_ID] == "Chest study (Dr. A)"
        assert fake.renames == ["Chest study"]

        push_round(catalog, fake, round_id, project="Chest study v2", with_model=False)  # the config changed
        assert fake.titles[PROJECT_ID] == "Chest study v2"
        assert load_binding(catalog.workspace).project_id == PROJECT_ID
    finally:
        catalog.dispose()
