"""Bench commands refuse bad input before any work: unknown catalog operations, images not where the COCO says."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner


def _invoke(arguments: list[str]):
    from radloop.app.cli import build_app

    return CliRunner().invoke(build_app(), arguments)


def _refused(result, *phrases: str) -> None:
    """A one-line ``error:`` exit (code 2, no traceback) that says each of ``phrases``."""
    printed = result.output
    assert result.exit_code == 2, printed
    assert "error:" in printed and "Traceback" not in printed, printed
    flat = " ".join(printed.split())  # the console may wrap a long line
    for phrase in phrases:
        assert phrase in flat, printed


def test_bench_catalog_refuses_unknown_operations_before_building(tmp_path):
    from radloop.core.catalog_bench import bench_catalog

    with pytest.raises(ValueError, match=r"unknown operations 'inf', 'serch'; valid: info, overview, index build"):
        bench_catalog([2], tmp_path, operations=["info", "inf", "serch"], keep=True)
    assert not list(tmp_path.iterdir())  # no catalog was built


def test_cli_bench_catalog_refuses_unknown_operations_before_building(tmp_path):
    result = _invoke(["bench", "catalog", "--sizes", "2", "--folder", str(tmp_path), "--keep",
                      "--operations", "inf,serch", "--json"])
    _refused(result, "--operations: unknown operations 'inf', 'serch'; valid: info, overview, index build, search, "
                     "search --filter, embed (nothing to do), round start 1")
    assert not list(tmp_path.iterdir())
    blank = _invoke(["bench", "catalog", "--sizes", "2", "--folder", str(tmp_path), "--operations", " , "])
    _refused(blank, "names no operation")
    assert not list(tmp_path.iterdir())


def _coco(folder, name: str, count: int, prefix: str = "img"):
    """A COCO file of ``count`` images (every other one with a wrist fracture box) and its empty image folder."""
    images = [{"id": i, "file_name": f"{prefix}{i:04d}.jpg", "width": 32, "height": 32} for i in range(count)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16, "iscrowd": 0}
                   for i in range(0, count, 2)]
    categories = [{"id": 0, "name": "bones", "supercategory": "none"},
                  {"id": 1, "name": "wrist positive", "supercategory": "bones"}]
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    images_folder = folder / f"{name}-images"
    images_folder.mkdir()
    return path, images_folder, [image["file_name"] for image in images]


def _write_images(folder, names: list[str]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / name)


def _bench_al(tmp_path, encoder, *options: str):
    return _invoke(["bench", "active-learning", "--encoder", str(encoder), "--tasks", "fracture",
                    "--strategies", "random", "--budget", "4", "--step", "2", "--seeds", "1",
                    "--out", str(tmp_path / "al" / "al.json"), *options])


def test_bench_active_learning_refuses_a_train_images_folder_without_the_images(tmp_path):
    coco, _, names = _coco(tmp_path, "train.json", 12)
    wrong = tmp_path / "wrongdir"
    wrong.mkdir()
    (wrong / names[3]).write_bytes(b"")  # one of them is there: the count says how many are not
    # no encoder at that path: the images are checked before it is loaded
    result = _bench_al(tmp_path, tmp_path / "no-encoder", "--train-coco", str(coco), "--train-images", str(wrong))
    _refused(result, f"11 of the 12 images listed in {coco} are not in {wrong} (e.g. img0000.jpg): pass the folder "
                     "that holds them with --train-images")


def test_bench_active_learning_refuses_an_eval_images_folder_without_the_images(tmp_path):
    coco, folder, names = _coco(tmp_path, "train.json", 12)
    _write_images(folder, names)
    eval_coco, _, _ = _coco(tmp_path, "eval.json", 6, prefix="held")
    result = _bench_al(tmp_path, tmp_path / "no-encoder", "--train-coco", str(coco), "--train-images", str(folder),
                       "--eval-coco", str(eval_coco), "--eval-images", str(folder))
    _refused(result, f"6 of the 6 images listed in {eval_coco} are not in {folder} (e.g. held0000.jpg): pass the "
                     "folder that holds them with --eval-images")


def test_bench_active_learning_names_an_unreadable_image_instead_of_a_traceback(tmp_path):
    from radloop.ssl import random_encoder, save_encoder

    encoder = tmp_path / "encoder"
    save_encoder(random_encoder("test_resnet", 32, seed=0).model.backbone, encoder, timm_name="test_resnet",
                 image_size=32, method="random")
    coco, folder, names = _coco(tmp_path, "train.json", 12)
    _write_images(folder, names)
    (folder / names[5]).write_bytes(b"not a JPEG")  # there, but corrupt
    result = _bench_al(tmp_path, encoder, "--train-coco", str(coco), "--train-images", str(folder))
    _refused(result, f"cannot read {folder / names[5]}:", "replace the file or leave it out of the COCO file")


def test_bench_active_learning_names_a_folder_that_is_not_an_encoder(tmp_path):
    coco, folder, names = _coco(tmp_path, "train.json", 12)
    _write_images(folder, names)
    result = _bench_al(tmp_path, tmp_path / "no-encoder", "--train-coco", str(coco), "--train-images", str(folder))
    _refused(result, f"--encoder {tmp_path / 'no-encoder'}:")
