"""`radloop search`, `radloop index build|info` (the retrieval benchmarks: :mod:`radloop.app.cli_bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.options import (
    JsonOption, OverrideOption, WorkspaceOption, console, emit, fail, note_large_images, open_catalog, say,
)

index_app = typer.Typer(no_args_is_help=True, help="Case-search indexes (FAISS): build, inspect.")


def register(groups) -> None:
    """Attach the retrieval and active-learning commands to the CLI groups."""
    groups.root.command("search")(search_command)
    groups.root.add_typer(index_app, name="index")


def index_config(config: Optional[Path], overrides):
    """The index settings of ``config`` with ``--set`` overrides; a bad config exits with one error line."""
    from radloop.core.config import ConfigError, load_config
    from radloop.retrieval.index import IndexConfig

    try:
        return load_config(config, IndexConfig, overrides)
    except ConfigError as error:
        fail(str(error))


def search_command(
    image: Annotated[Optional[Path], typer.Option("--image", help="Query image file (PNG/JPEG/DICOM).")] = None,
    case: Annotated[Optional[str], typer.Option("--case", help="Query catalog image id (I-...) or study id (S-...).")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Number of neighbours.")] = 10,
    filters: Annotated[Optional[list[str]], typer.Option(
        "--filter", help="key=value, repeatable (same key: any of; keys, in any case: body_region, finding, split, "
                         "dataset, modality, view, laterality; body_region=unknown: images without a region, as "
                         "`radloop info` counts them, likewise for modality, view, laterality).")] = None,
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="Encoder version or encoder folder (default: the current encoder).")] = None,
    same_study: Annotated[bool, typer.Option(
        "--same-study", help="Also list the query's other study images (other views, copies).")] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Find the catalog cases most similar to an image or a case (other studies only, unless --same-study)."""
    if (image is None) == (case is None):
        fail("give exactly one of --image FILE or --case ID")
    from radloop.retrieval.search import parse_filters, search_cases

    try:
        parsed = parse_filters(filters)
    except ValueError as error:
        fail(str(error))
    from radloop.retrieval.search import (DISTANCES, index_coverage, index_metric, metric_change_note,
                                          resolve_search_encoder)

    catalog = open_catalog(workspace)
    match = None
    if image is not None and image.is_file():  # a catalogued file (or a re-saved copy) is searched as that case
        from radloop.retrieval.query_match import match_catalog_file

        note_large_images([image])
        match = match_catalog_file(catalog, image.read_bytes())
        if match is not None:
            console.print(f"note: {match.message}: searching as that case (its own study left out)", markup=False,
                          highlight=False)
    try:
        version, bundle = resolve_search_encoder(catalog, encoder)  # an encoder folder loaded once, not per step
        chosen = bundle if bundle is not None else version
        if match is not None:
            hits = search_cases(catalog, case_id=match.image_id, k=k, filters=parsed, encoder=chosen,
                                same_study=same_study, progress=say)
        else:
            hits = search_cases(catalog, image=image, case_id=case, k=k, filters=parsed, encoder=chosen,
                                same_study=same_study, match_file=False, progress=say)  # looked up above
    except (ValueError, LookupError, FileNotFoundError) as error:
        fail(str(error))
    embedded, total = index_coverage(catalog, version)
    metric, change = index_metric(catalog, version)  # the saved index the search just used
    metric = hits[0].metric if hits else metric
    result = {"query": str(image) if image else case, "k": k, "filters": parsed, "encoder": version,
              "metric": metric, "distance": DISTANCES.get(metric, metric),
              "images_searched": embedded, "images_in_catalog": total,
              "neighbours": [hit.to_dict() for hit in hits]}
    if change:  # rebuilt with another metric (e.g. `round start` over an l2 index): not the distances seen before
        result["metric_change"] = change
        console.print(f"note: {metric_change_note(version, change)}", markup=False, highlight=False)
    if match is not None:  # how the query file was recognised: "file" (same bytes) or "pixels" (re-saved copy)
        result["query_match"] = {"image_id": match.image_id, "matched_by": match.matched_by}
    if embedded < total:
        console.print(f"note: {embedded:,} of {total:,} catalog images are embedded with {version}; "
                      f"`radloop embed --encoder {version}` makes the rest searchable", markup=False,
                      highlight=False)
    if json_output:
        emit(result, True)
        return
    if not hits:
        console.print("no neighbours" + (" match these filters" if parsed else ""), markup=False, highlight=False)
        return
    from radloop.app.options import listing_table, show
    from radloop.retrieval.search_filters import UNKNOWN_VALUE

    # no region: the word `radloop info` groups such images under and `--filter body_region=unknown` selects
    rows = [[hit.rank, hit.image_id, f"{hit.distance:.4f}", hit.body_region or UNKNOWN_VALUE,
             ", ".join(f"{key}={value}" for key, value in hit.labels.items()), hit.report_excerpt[:80]]
            for hit in hits]
    column = "distance (1 - cosine)" if metric == "cosine" else f"distance ({metric.upper()})"
    show(listing_table(["rank", "image", column, "region", "labels", "report"], rows,
                       title=f"{len(hits)} neighbour{'s' if len(hits) != 1 else ''} of {result['query']}",
                       whole=("image",)))


@index_app.command("build")
def index_build_command(
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="Encoder version or encoder folder (default: the current encoder).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Index YAML (configs/retrieval/index.yaml).")] = None,
    factory: Annotated[Optional[str], typer.Option("--factory", help="FAISS factory string, overrides the choice.")] = None,
    overrides: OverrideOption = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """(Re)build the case-search index of an encoder's embeddings and save it in the workspace."""
    import time

    from radloop.retrieval.index import IndexManager, index_folder
    from radloop.retrieval.search import resolve_encoder_version

    settings = index_config(config, (overrides or []) + ([f"factory={factory}"] if factory else []))
    catalog = open_catalog(workspace)
    try:
        version = resolve_encoder_version(catalog, encoder)
        say(f"building the case-search index of {version}'s embeddings (minutes for millions of images)")
        start = time.perf_counter()
        manager = IndexManager.from_catalog(catalog, version, settings, progress=say)
        folder = manager.save(index_folder(catalog.workspace, version), note_metric_change=False)  # as asked
    except (ValueError, LookupError) as error:
        fail(str(error))
    emit({"model_version": version, "count": len(manager), "factory": manager.factory, "path": str(folder),
          "rerank": manager.config.rerank, "build_s": round(time.perf_counter() - start, 2),
          "memory_mb": round(manager.memory_bytes() / 2**20, 2),
          "nprobe_calibration": manager.calibration}, json_output, title="index build")


@index_app.command("info")
def index_info_command(
    encoder: Annotated[Optional[str], typer.Option(
        "--encoder", help="Encoder version or encoder folder (default: the current encoder).")] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the saved index of an encoder (manifest)."""
    from radloop.retrieval.index import MANIFEST, index_folder
    from radloop.retrieval.search import resolve_encoder_version

    catalog = open_catalog(workspace)
    try:
        version = resolve_encoder_version(catalog, encoder)
    except LookupError as error:
        fail(str(error))
    manifest = index_folder(catalog.workspace, version) / MANIFEST
    if not manifest.is_file():
        fail(f"no index for {version}: run `radloop index build --encoder {version}`")
    try:
        saved = json.loads(manifest.read_text())
        if not isinstance(saved, dict) or "model_version" not in saved:
            raise ValueError("no model_version")
    except ValueError as error:  # truncated or overwritten manifest (JSON and text decoding errors alike)
        fail(f"the index at {manifest.parent} cannot be read ({manifest.name}: {error}): rebuild it with "
             f"`radloop index build --encoder {version}`")
    from radloop.retrieval.search import index_coverage

    unindexed = index_coverage(catalog, version)[0] - int(saved.get("count") or 0)  # count: live ids only
    if unindexed > 0:  # the manifest's counts alone read as if the index covered every embedded image
        console.print(f"note: {unindexed:,} images embedded with {version} since this index was saved are not in "
                      "it yet: the next `radloop search` adds them (or `radloop index build`)", markup=False,
                      highlight=False)
    emit(saved, json_output, title="index")
