"""`radloop embed` with nothing to do (answered from the catalog, no torch), shard files lost from disk
(re-embedded by `embed`, named by `load_embeddings`; a whole lost folder refused), concurrent runs, read errors
that are not a lost shard, and shard naming without a query per shard."""

from __future__ import annotations

import errno
import os
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from ssl_workspace import build_workspace

from radloop.core import embeddings
from radloop.core.embeddings import (EmbeddingShardError, forget_lost_shards, load_embeddings, lost_shards,
                                     missing_image_ids, next_shard_index, write_shard)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VERSION = "enc-test-lost"


@pytest.fixture
def encoder_dir(tmp_path):
    from radloop.ssl import random_encoder, save_encoder

    bundle = random_encoder("resnet18", 32, seed=1)
    return save_encoder(bundle.model.backbone, tmp_path / "encoder", timm_name="resnet18", image_size=32,
                        method="simclr", mean=[0.4], std=[0.2]).config, tmp_path / "encoder"


def _invoke_embed(catalog, folder, *extra: str):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), ["embed", "--encoder", str(folder), "--accelerator", "cpu",
                                            "-w", str(catalog.workspace.root), "--json", *extra])


def _embed(catalog, folder, *extra: str) -> dict:
    result = _invoke_embed(catalog, folder, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(result, *phrases: str) -> None:
    """A clear error (exit 2, no traceback) that says each of ``phrases``."""
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "error:" in text and "Traceback" not in text and all(phrase in text for phrase in phrases), text


def _shard_folder(catalog) -> Path:
    (folder,) = [path for path in catalog.workspace.embeddings_dir.iterdir() if path.is_dir()]
    return folder


def _vectors(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)


def test_embed_with_nothing_to_do_answers_from_the_catalog_without_torch(catalog, encoder_dir):
    """The no-op summary of `radloop embed` (current, a version, a registered folder) comes without importing
    torch or Lightning or loading the weights, and matches the one the embedding path gives."""
    from radloop.ssl import load_encoder
    from radloop.ssl.embed import embed_catalog

    config, folder = encoder_dir
    build_workspace(catalog, 6)
    assert _embed(catalog, folder, "--shard-size", "4")["embedded"] == 6  # registers the folder as current
    reference = embed_catalog(catalog, load_encoder(folder), progress=False, accelerator="cpu")
    root = str(catalog.workspace.root)
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from radloop.app.cli import build_app\n"
        "outputs = []\n"
        f"for encoder in ('current', {config.version!r}, {str(folder)!r}):\n"
        f"    result = CliRunner().invoke(build_app(), ['embed', '--encoder', encoder, '-w', {root!r}, '--json'])\n"
        "    outputs.append([result.exit_code, result.stdout])\n"
        "heavy = [name for name in ('torch', 'lightning', 'timm', 'safetensors') if name in sys.modules]\n"
        "print(json.dumps({'outputs': outputs, 'heavy': heavy}))\n")
    # the workspace fixture's environment (its database URL under PostgreSQL) is inherited
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["heavy"] == []
    summaries = []
    for exit_code, stdout in payload["outputs"]:
        assert exit_code == 0, stdout
        summaries.append(json.loads(stdout))
    expected = {key: value for key, value in reference.items() if key != "seconds"}
    for summary in summaries:
        assert list(summary)[:len(reference)] == list(reference)  # same keys, same order
        assert {key: value for key, value in summary.items() if key not in ("seconds", "registry")} == expected
    assert "registry" not in summaries[0] and "registry" not in summaries[1]
    assert summaries[2]["registry"] == "already registered"


def test_embed_with_nothing_to_do_still_refuses_an_overwritten_encoder_folder(catalog, encoder_dir):
    from radloop.app.cli import build_app
    from radloop.ssl import random_encoder, save_encoder

    config, folder = encoder_dir
    build_workspace(catalog, 2)
    _embed(catalog, folder)
    save_encoder(random_encoder("resnet18", 32, seed=2).model.backbone, folder, timm_name="resnet18",
                 image_size=32, method="simclr", mean=[0.4], std=[0.2])
    result = CliRunner().invoke(build_app(), ["embed", "--encoder", config.version, "--accelerator", "cpu", "-w",
                                              str(catalog.workspace.root), "--json"])
    assert result.exit_code == 2 and "it was overwritten" in result.output and result.stdout.strip() == ""


def test_embed_embeds_again_the_images_of_lost_or_truncated_shards(catalog, encoder_dir, caplog):
    from radloop.ssl import embed_images, load_encoder

    config, folder = encoder_dir
    build_workspace(catalog, 10)
    first = _embed(catalog, folder, "--shard-size", "4")
    assert first["embedded"] == 10 and first["shards"] == 3 and "lost_shards" not in first
    (_shard_folder(catalog) / "shard-00001.npy").unlink()  # 4 images
    last = _shard_folder(catalog) / "shard-00002.npy"  # 2 images: cut inside its data
    last.write_bytes(last.read_bytes()[:-10])
    assert [(Path(shard.shard_path).name, shard.images) for shard in lost_shards(catalog, config.version)] == [
        ("shard-00001.npy", 4), ("shard-00002.npy", 2)]
    with pytest.raises(EmbeddingShardError, match="shard-00001.npy .* is missing"):
        load_embeddings(catalog, config.version)

    again = _embed(catalog, folder, "--shard-size", "4")
    assert again["embedded"] == 6 and again["already_embedded"] == 4
    assert again["lost_shards"] == {"images": 6, "shards": ["shard-00001.npy", "shard-00002.npy"]}
    assert "6 images pointed at 2 lost shard file(s)" in caplog.text and "shard-00001.npy is missing" in caplog.text
    assert missing_image_ids(catalog, config.version) == [] and lost_shards(catalog, config.version) == []
    names = sorted(path.name for path in last.parent.glob("shard-*.npy"))
    # the cut file stays (no row points at it now); no lost shard's name is given to new vectors
    assert names == ["shard-00000.npy", "shard-00002.npy", "shard-00003.npy", "shard-00004.npy"]
    stored = load_embeddings(catalog, config.version)
    bundle = load_encoder(folder)
    paths = [str(catalog.workspace.absolute(f"renders/{image_id}.png")) for image_id in stored.image_ids]
    np.testing.assert_allclose(stored.vectors, embed_images(bundle, paths, device="cpu"), rtol=1e-4, atol=1e-5)
    assert _embed(catalog, folder)["embedded"] == 0


@pytest.mark.parametrize("damage", ["missing", "cut_header", "cut_data", "fewer_rows", "not_npy", "npz"])
def test_load_embeddings_names_a_lost_shard_and_the_fix(catalog, damage):
    ids = build_workspace(catalog, 6)
    write_shard(catalog, VERSION, ids[:3], _vectors(3), normalized=True)
    damaged = write_shard(catalog, VERSION, ids[3:], _vectors(3, seed=1), normalized=True)
    content = damaged.read_bytes()
    if damage == "missing":
        damaged.unlink()
    elif damage == "cut_header":
        damaged.write_bytes(content[:20])
    elif damage == "cut_data":
        damaged.write_bytes(content[:-4])
    elif damage == "fewer_rows":
        np.save(damaged, _vectors(2, seed=1))
    elif damage == "not_npy":
        damaged.write_bytes(b"not an array at all" * 10)
    else:
        with open(damaged, "wb") as handle:
            np.savez(handle, vectors=_vectors(3, seed=1))
    with pytest.raises(EmbeddingShardError) as caught:
        load_embeddings(catalog, VERSION)
    message = str(caught.value)
    assert str(damaged) in message and f"radloop embed --encoder {VERSION}" in message
    assert ("is missing" if damage == "missing" else "is truncated" if damage == "fewer_rows" else "is unreadable") \
        in message
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, LookupError)  # not "not embedded yet": the rows are still there
    intact = load_embeddings(catalog, VERSION, ids[:3])  # the other shard still serves its images
    expected = dict(zip(ids[:3], _vectors(3)))
    np.testing.assert_array_equal(intact.vectors, np.stack([expected[image_id] for image_id in intact.image_ids]))
    assert [shard.images for shard in lost_shards(catalog, VERSION)] == [3]


def test_shard_names_never_replace_a_file_nor_reuse_a_lost_shards_name(catalog):
    ids = build_workspace(catalog, 5)
    first = write_shard(catalog, VERSION, ids[:1], _vectors(1), normalized=True)
    stray = first.parent / "shard-00001.npy"  # a file no row points at (e.g. copied in by hand)
    stray.write_bytes(b"keep me")
    second = write_shard(catalog, VERSION, ids[1:2], _vectors(1), normalized=True)
    assert (first.name, second.name) == ("shard-00000.npy", "shard-00002.npy") and stray.read_bytes() == b"keep me"
    third = write_shard(catalog, VERSION, ids[2:3], _vectors(1), normalized=True, index=1)  # a stale counter
    assert third.name == "shard-00003.npy" and stray.read_bytes() == b"keep me"
    third.unlink()  # lost, its row remains: its number stays taken
    assert next_shard_index(catalog, VERSION) == 4
    assert write_shard(catalog, VERSION, ids[3:4], _vectors(1), normalized=True).name == "shard-00004.npy"
    assert not list(first.parent.glob(".shard-*.tmp"))


def test_a_writer_counting_on_never_reuses_a_number_retired_after_its_lookup(catalog):
    """A long run counts shard numbers on from its first lookup; a shard it wrote that is lost and forgotten by
    another run meanwhile retires its number (the mark), and the long run's next shard skips it."""
    ids = build_workspace(catalog, 4)
    index = embeddings.next_shard_index(catalog, VERSION)
    first = write_shard(catalog, VERSION, ids[:1], _vectors(1), normalized=True, index=index)
    second = write_shard(catalog, VERSION, ids[1:2], _vectors(1), normalized=True,
                         index=embeddings.shard_number(first) + 1)
    second.unlink()  # lost while the long run goes on ...
    assert [shard.images for shard in embeddings.forget_lost_shards(catalog, VERSION)] == [1]  # ... forgotten
    # the long run counted on from its own last shard: shard-00002; without the mark it would be 00001 again
    third = write_shard(catalog, VERSION, ids[2:3], _vectors(1), normalized=True,
                        index=embeddings.shard_number(first) + 1)
    assert third.name == "shard-00002.npy"


def test_temporaries_of_killed_writers_are_swept_when_stale(catalog):
    ids = build_workspace(catalog, 2)
    folder = write_shard(catalog, VERSION, ids[:1], _vectors(1), normalized=True).parent
    stale, fresh = folder / ".shard-00007-4242.npy.tmp", folder / ".shard-00008-4243.npy.tmp"
    mark, other = folder / ".next-shard-4242.tmp", folder / "notes.tmp"
    for path in (stale, fresh, mark, other):
        path.write_bytes(b"x")
    old = time.time() - embeddings.STALE_TEMPORARY_S - 60
    for path in (stale, mark, other):
        os.utime(path, (old, old))
    assert embeddings.next_shard_index(catalog, VERSION) == 1
    assert not stale.exists() and not mark.exists()
    assert fresh.exists() and other.exists()  # a live writer's file, and a file radloop did not write


def test_the_shard_writer_looks_the_next_name_up_once_not_per_shard(catalog):
    """Naming a shard used to count the version's distinct shards in the catalog on every write (a growing
    cost: ~30 s over a million images); the writer now asks once and counts on."""
    from radloop.ssl.embed import _ShardWriter

    ids = build_workspace(catalog, 12)
    write_shard(catalog, VERSION, ids[:2], _vectors(2), normalized=True)  # an earlier run's shard
    statements: list[str] = []

    def record(connection, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(catalog.engine, "before_cursor_execute", record)
    try:
        writer = _ShardWriter(catalog, VERSION, shard_size=2, fp16=False, normalized=True)
        for start in range(2, 12, 2):
            writer.write_on_batch_end(None, None, {"image_ids": ids[start:start + 2], "skipped": {},
                                                   "vectors": _vectors(2, seed=start)}, None, None, 0)
        writer.flush()
    finally:
        event.remove(catalog.engine, "before_cursor_execute", record)
    assert writer.shards == 5 and writer.written == 10
    shard_lookups = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT") and "shard_path" in sql]
    assert len(shard_lookups) == 1, shard_lookups
    names = sorted(path.name for path in _shard_folder(catalog).glob("shard-*.npy"))
    assert names == [f"shard-{index:05d}.npy" for index in range(6)]
    stored = load_embeddings(catalog, VERSION)
    assert stored.image_ids == sorted(ids) and missing_image_ids(catalog, VERSION) == []


@pytest.mark.parametrize("odd", [0, 1])
def test_a_shard_of_another_width_is_lost_and_named_whichever_is_read_first(catalog, odd):
    ids = build_workspace(catalog, 6)
    shards = [write_shard(catalog, VERSION, ids[:3], _vectors(3), normalized=True),
              write_shard(catalog, VERSION, ids[3:], _vectors(3, seed=1), normalized=True)]
    np.save(shards[odd], _vectors(3, dim=4))  # e.g. restored from another encoder's folder
    assert [(Path(shard.shard_path).name, shard.reason) for shard in lost_shards(catalog, VERSION)] == [
        (shards[odd].name, "has the wrong width (vectors of 4 values, the catalog's of 8)")]
    with pytest.raises(EmbeddingShardError, match=f"{shards[odd]} of {VERSION} has the wrong width"):
        load_embeddings(catalog, VERSION)
    assert [shard.images for shard in forget_lost_shards(catalog, VERSION)] == [3]
    assert missing_image_ids(catalog, VERSION) == sorted(ids[3 * odd:3 * odd + 3])


def test_forgetting_lost_shards_looks_again_under_the_lock_and_never_frees_a_shard_number(catalog):
    """Run B lists a lost shard; run A meanwhile forgets it and records its images again; B must not delete A's
    rows (it used to, by shard path, A's new shard having taken the freed name)."""
    ids = build_workspace(catalog, 6)
    write_shard(catalog, VERSION, ids[:3], _vectors(3), normalized=True)
    write_shard(catalog, VERSION, ids[3:], _vectors(3, seed=1), normalized=True).unlink()  # shard-00001, lost
    listing, calls = embeddings.lost_shards, []

    def listed_then_other_run(catalog_, version):
        lost = listing(catalog_, version)
        if not calls:
            calls.append(version)
            assert [shard.images for shard in embeddings.forget_lost_shards(catalog, VERSION)] == [3]  # run A
            calls.append(write_shard(catalog, VERSION, missing_image_ids(catalog, VERSION), _vectors(3, seed=2),
                                     normalized=True))
        return lost

    with mock.patch.object(embeddings, "lost_shards", listed_then_other_run):
        assert embeddings.forget_lost_shards(catalog, VERSION) == []  # run B
    assert calls[1].name == "shard-00002.npy"  # not the lost shard's number
    assert missing_image_ids(catalog, VERSION) == [] and lost_shards(catalog, VERSION) == []
    assert next_shard_index(catalog, VERSION) == 3


def test_two_runs_of_one_encoder_both_finish_and_leave_no_shard_without_rows(catalog, encoder_dir):
    from radloop.ssl.embed import _ShardWriter

    ids = build_workspace(catalog, 6)
    first, second = (_ShardWriter(catalog, VERSION, shard_size=10, fp16=False, normalized=True) for _ in range(2))
    for writer, chosen, seed in ((first, ids[:4], 0), (second, ids, 1)):  # both started before either wrote
        batch = {"image_ids": chosen, "skipped": {}, "vectors": _vectors(len(chosen), seed=seed)}
        writer.write_on_batch_end(None, None, batch, None, None, 0)
    first.flush()
    second.flush()  # used to fail with IntegrityError after publishing its shard
    assert (first.written, second.written, second.embedded_meanwhile) == (4, 2, 4)
    stored = load_embeddings(catalog, VERSION)
    expected = {**dict(zip(ids, _vectors(6, seed=1))), **dict(zip(ids[:4], _vectors(4)))}
    np.testing.assert_array_equal(stored.vectors, np.stack([expected[image_id] for image_id in stored.image_ids]))
    with pytest.raises(IntegrityError):  # a writer that does not check first: its shard file is removed again
        write_shard(catalog, VERSION, ids[:1], _vectors(1), normalized=True)
    names = sorted(path.name for path in _shard_folder(catalog).glob("shard-*"))
    assert names == ["shard-00000.npy", "shard-00001.npy"]
    error = IntegrityError("INSERT INTO embeddings", {}, Exception("UNIQUE constraint failed"))
    with mock.patch("radloop.ssl.embed.embed_catalog", side_effect=error):  # the encoder's images: not embedded
        _refused(_invoke_embed(catalog, encoder_dir[1]), "the catalog refused the new embeddings",
                 "UNIQUE constraint failed", "rerun the same command")


def test_a_version_whose_every_shard_is_lost_is_refused_not_forgotten(catalog, encoder_dir):
    config, folder = encoder_dir
    build_workspace(catalog, 6)
    _embed(catalog, folder, "--shard-size", "2")
    shards = _shard_folder(catalog)
    moved = catalog.workspace.root / "moved-away"
    shutil.move(shards, moved)  # a folder moved, or a volume not mounted
    _refused(_invoke_embed(catalog, folder), f"its folder {shards} is missing", "restore it", "--reembed-lost")
    assert missing_image_ids(catalog, config.version) == [] and not shards.exists()  # nothing forgotten or made
    shutil.move(moved, shards)
    assert _embed(catalog, folder)["embedded"] == 0 and len(load_embeddings(catalog, config.version).image_ids) == 6
    for path in shards.glob("shard-*.npy"):
        path.unlink()
    with pytest.raises(EmbeddingShardError, match="none of its 3 shard files is in .* --reembed-lost"):
        forget_lost_shards(catalog, config.version)
    again = _embed(catalog, folder, "--shard-size", "2", "--reembed-lost")
    assert again["embedded"] == 6 and again["lost_shards"]["images"] == 6
    assert sorted(path.name for path in shards.glob("shard-*.npy")) == [f"shard-{index:05d}.npy" for index in (3, 4, 5)]


@pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), OSError(errno.ESTALE, "Stale file handle"),
                                   PermissionError(errno.EACCES, "Permission denied")])
def test_a_shard_that_fails_to_read_for_another_reason_is_not_lost(catalog, encoder_dir, error):
    """Only a missing file or bad content is a lost shard: an I/O error may pass, and its rows must stay."""
    config, folder = encoder_dir
    build_workspace(catalog, 4)
    _embed(catalog, folder, "--shard-size", "2")
    load = np.load

    def failing(path, *args, **kwargs):
        if Path(path).name == "shard-00001.npy":
            raise error
        return load(path, *args, **kwargs)

    with mock.patch.object(np, "load", failing):
        with pytest.raises(type(error)):
            forget_lost_shards(catalog, config.version)
        with pytest.raises(type(error)):
            load_embeddings(catalog, config.version)
        _refused(_invoke_embed(catalog, folder), "embedding stopped", error.strerror, "no catalog row was forgotten")
    assert missing_image_ids(catalog, config.version) == [] and lost_shards(catalog, config.version) == []


def test_a_version_with_one_damaged_shard_is_repaired_not_refused(catalog, encoder_dir):
    """A file that is there but cut is no moved folder: even as the version's only shard it is re-embedded (the
    refusal is for missing files only), and a missing only shard is named as such."""
    config, folder = encoder_dir
    build_workspace(catalog, 4)
    _embed(catalog, folder)
    [shard] = list(_shard_folder(catalog).glob("shard-*.npy"))
    shard.write_bytes(shard.read_bytes()[:100])  # cut inside the data
    again = _embed(catalog, folder)
    assert again["embedded"] == 4 and again["lost_shards"] == {"images": 4, "shards": [shard.name]}
    assert len(load_embeddings(catalog, config.version).image_ids) == 4
    shard.unlink()  # the cut file, no longer pointed at
    [shard] = list(_shard_folder(catalog).glob("shard-*.npy"))  # the new one
    shard.unlink()
    _refused(_invoke_embed(catalog, folder), f"its only shard file, {shard.name}, is missing",
             f"radloop embed --encoder {config.version} --reembed-lost")
