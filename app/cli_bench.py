"""`radloop bench active-learning|retrieval|selection|catalog`: label efficiency, index and selection speed,
catalog operations at archive scale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from radloop.app.cli_retrieval import index_config
from radloop.app.options import JsonOption, OverrideOption, console, emit, fail, say


def register(groups) -> None:
    """Attach the benchmark commands."""
    groups.bench.command("active-learning")(bench_active_learning_command)
    groups.bench.command("retrieval")(bench_retrieval_command)
    groups.bench.command("selection")(bench_selection_command)
    groups.bench.command("catalog")(bench_catalog_command)


def _load_npz(path: Path):
    import numpy as np

    if not path.is_file():
        fail(f"--embeddings {path} does not exist")
    import zipfile

    how = "save it with numpy.savez(PATH, vectors=..., file_names=...)"
    if not zipfile.is_zipfile(path):  # numpy would read anything else as a pickle, and refuse it as one
        with open(path, "rb") as handle:
            single = handle.read(6) == b"\x93NUMPY"  # a bare .npy array: no file names to match images by
        fail(f"--embeddings {path} is " + ("a single .npy array, not an NPZ archive of named arrays" if single
                                           else "not an NPZ archive") + f": {how}")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # a damaged archive
        fail(f"--embeddings {path} is not a readable NPZ archive ({error}): {how}")
    missing = [key for key in ("vectors",) if key not in data]
    if missing:
        held = ", ".join(sorted(data.files)) or "none"
        fail(f"--embeddings {path} has no 'vectors' array (it holds: {held}); only 'vectors' is required, "
             f"'file_names' (or 'ids') match them to images: {how}")
    try:
        names = data["file_names"] if "file_names" in data else data["ids"] if "ids" in data else None
        vectors = data["vectors"]
    except (ValueError, OSError, EOFError) as error:  # a damaged member, an object (pickled) array
        fail(f"--embeddings {path}: cannot read its arrays ({error})")
    if vectors.ndim != 2 or vectors.dtype.kind not in "biuf" or not vectors.size:
        fail(f"--embeddings {path}: 'vectors' must be a non-empty numeric (N, D) array, got {vectors.dtype} "
             f"of shape {vectors.shape}")
    if names is not None and len(names) != len(vectors):
        fail(f"--embeddings {path}: {len(names)} file names for {len(vectors)} vectors")
    from radloop.retrieval.arrays import as_float32

    try:  # rows numbered as in the file (benchmarks shuffle or subset them later)
        vectors = as_float32(f"the vectors in {path}", vectors)
    except ValueError as error:
        fail(str(error))
    return (None if names is None else [str(name) for name in names]), vectors


def _refuse_shared_images(pool_names: list[str], pool_folder: Path, eval_names: list[str],
                          eval_folder: Path) -> None:
    """Stop when the evaluation set holds pool images (the same file name in the same images folder, or one file
    reached by both: a linked folder or file), or names another file like a pool image (embeddings are matched
    to images by file name, so the two would share one vector); the message counts them and names one.  One path
    resolution per image, no pixels read."""
    import os

    pool_files = {os.path.realpath(pool_folder / name) for name in pool_names}
    shared = [name for name in eval_names if os.path.realpath(eval_folder / name) in pool_files]
    if shared:
        fail(f"--eval-coco shares {len(shared)} of its {len(eval_names)} image(s) with the pool (--train-coco), "
             f"e.g. {eval_folder / shared[0]}: a strategy would be scored on images it may select and train on; "
             "remove them from one side, or leave --eval-coco out to hold out --eval-fraction of the pool")
    pool_base = {Path(name).name for name in pool_names}
    namesakes = [name for name in eval_names if Path(name).name in pool_base]
    if namesakes:
        fail(f"{len(namesakes)} evaluation image(s) have the file name of a different pool image, e.g. "
             f"{eval_folder / namesakes[0]}: embeddings are matched to images by file name, so each pair would get "
             "one vector; rename them (or copy the evaluation images under new names)")


def _refuse_missing_images(names: list[str], folder: Path, coco: Path, option: str) -> None:
    """Exit when images that ``coco`` lists are not files in ``folder`` (checked before an encoder is loaded)."""
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        fail(f"{len(missing):,} of the {len(names):,} images listed in {coco} are not in {folder} (e.g. {missing[0]}): "
             f"pass the folder that holds them with {option}")


def bench_active_learning_command(
    train_coco: Annotated[Path, typer.Option("--train-coco", help="COCO file of the pool images.")],
    train_images: Annotated[Path, typer.Option("--train-images", help="Folder of the pool images.")],
    eval_coco: Annotated[Optional[Path], typer.Option("--eval-coco", help=(
        "COCO file of held-out images (refused when it shares images with the pool)."))] = None,
    eval_images: Annotated[Optional[Path], typer.Option("--eval-images", help="Folder of held-out images.")] = None,
    eval_fraction: Annotated[float, typer.Option(
        "--eval-fraction", help="Without --eval-coco: hold out this fraction of the train images (seeded; "
                                "Roboflow copies of one source image stay on one side).")] = 0.25,
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated: region, fracture.")] = "region,fracture",
    strategies: Annotated[Optional[str], typer.Option(
        "--strategies", help="Comma-separated registry names (default: random, the uncertainty measures, kcenter, "
                             "typiclust, cluster_margin, badge).")] = None,
    budget: Annotated[int, typer.Option("--budget", min=1)] = 500,
    step: Annotated[int, typer.Option("--step", min=1)] = 50,
    seeds: Annotated[int, typer.Option("--seeds", min=1)] = 3,
    embeddings: Annotated[Optional[Path], typer.Option(
        "--embeddings", help="NPZ with vectors and file_names (or ids) of every image.")] = None,
    encoder: Annotated[Optional[Path], typer.Option("--encoder", help="Encoder folder: embed the images now.")] = None,
    regularization: Annotated[float, typer.Option("--C", help="Inverse L2 strength of the probe.")] = 0.1,
    pca: Annotated[int, typer.Option("--pca", min=0, help=(
        "PCA-whiten the probe's input to this many dimensions (0: standardised embeddings, all dimensions).")
    )] = 0,
    split_seed: Annotated[int, typer.Option("--split-seed")] = 0,
    headroom_draws: Annotated[int, typer.Option("--headroom-draws", min=0, help=(
        "Also score this many random training sets of budget / --headroom-savings labels: the share that reaches "
        "the mean of random budget-label sets is how rare a set a strategy must find for that saving (0: off).")
    )] = 0,
    headroom_savings: Annotated[float, typer.Option("--headroom-savings", help=(
        "The label saving --headroom-draws tests (5: budget / 5 labels against budget).")
    )] = 5.0,
    out: Annotated[Path, typer.Option("--out", help="Results JSON (a PNG plot is written next to it).")] = Path(
        "al_results.json"),
    json_output: JsonOption = False,
) -> None:
    """Simulated active learning on a COCO detection set: learning curves and label savings per strategy."""
    from radloop.retrieval import al_bench, al_tasks

    strategies = strategies or ",".join(al_bench.DEFAULT_STRATEGIES)

    if (embeddings is None) == (encoder is None):
        fail("give exactly one of --embeddings NPZ or --encoder FOLDER")
    for path in (train_coco, train_images) + tuple(p for p in (eval_coco, eval_images) if p is not None):
        if not path.exists():
            fail(f"{path} does not exist")
    if (eval_coco is None) != (eval_images is None):
        fail("--eval-coco and --eval-images go together")
    try:
        pool = al_tasks.load_coco_targets(train_coco)
        if eval_coco is None:
            pool, evaluation, _ = al_tasks.split_by_source(pool, eval_fraction, split_seed)
            eval_images = train_images
        else:
            evaluation = al_tasks.load_coco_targets(eval_coco)
            _refuse_shared_images(pool.file_names, train_images, evaluation.file_names, eval_images)
        if embeddings is not None:
            names, vectors = _load_npz(embeddings)
            if names is None:
                fail(f"{embeddings} needs a file_names (or ids) array")
            source = str(embeddings)
        else:
            from radloop.ssl import UnreadableImage, embed_images, load_encoder

            if eval_coco is None:  # both sides come from --train-coco
                _refuse_missing_images(pool.file_names + evaluation.file_names, train_images, train_coco,
                                       "--train-images")
            else:
                _refuse_missing_images(pool.file_names, train_images, train_coco, "--train-images")
                _refuse_missing_images(evaluation.file_names, eval_images, eval_coco, "--eval-images")
            try:
                bundle = load_encoder(encoder)
            except FileNotFoundError as error:  # not an encoder folder (no encoder.json / weights)
                fail(f"--encoder {encoder}: {error}")
            names = pool.file_names + evaluation.file_names
            folders = [train_images] * len(pool.file_names) + [eval_images] * len(evaluation.file_names)
            say(f"embedding {len(names)} images with {bundle.version}")
            try:
                vectors = embed_images(bundle, [str(folder / name) for folder, name in zip(folders, names)])
            except UnreadableImage as error:  # names the file and the decoder's reason
                fail(f"cannot read {error}: replace the file or leave it out of the COCO file")
            source = bundle.version
            import numpy as np

            cache = out.with_suffix(".embeddings.npz")  # reuse with --embeddings for further runs
            out.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, ids=np.asarray(names), file_names=np.asarray(names), vectors=vectors,
                     model_version=np.asarray(bundle.version))
            say(f"embeddings saved to {cache}")
        pool_x = al_tasks.features_for(pool, names, vectors, source)
        eval_x = al_tasks.features_for(evaluation, names, vectors, source)
        built = [al_tasks.build_task(name.strip(), pool, pool_x, evaluation, eval_x)
                 for name in tasks.split(",") if name.strip()]
        result = al_bench.run_benchmark(built, [name.strip() for name in strategies.split(",") if name.strip()],
                                        budget=budget, step=step, seeds=seeds, regularization=regularization,
                                        pca_components=pca or None, headroom_draws=headroom_draws,
                                        headroom_savings=headroom_savings, progress=say)
    except (ValueError, LookupError) as error:
        fail(str(error))
    result["embeddings"] = source
    result["eval"] = str(eval_coco) if eval_coco else f"{eval_fraction:.0%} of {train_coco.name} (seed {split_seed})"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot = al_bench.plot_curves(result, out.with_suffix(".png"))
    summary = {"out": str(out), "plot": str(plot), "tasks": {}}
    for name, entry in result["tasks"].items():
        summary["tasks"][name] = {"metric": entry["metric"], "random_final": entry.get("random_final"),
                                  "label_savings": entry.get("label_savings"),
                                  "labels_to_reach_random": entry.get("labels_to_reach_random")}
        headroom = entry.get("headroom")
        if headroom:
            summary["tasks"][name]["headroom"] = headroom
        if "full_pool" in entry:
            summary["tasks"][name]["full_pool"] = entry["full_pool"]
        random_spread = entry["strategies"]["random"]["std"][-1] if "random" in entry["strategies"] else 0.0
        if "savings_noise_floor" in entry:
            summary["tasks"][name]["savings_noise_floor"] = entry["savings_noise_floor"]
        for strategy, saving in (entry.get("label_savings") or {}).items():
            needed = entry["labels_to_reach_random"][strategy]
            curve = entry["strategies"][strategy]
            last = entry["strategies"]["random"]["labels"][-1]  # random's final step: the budget, or below it
            console.print(f"{name:9s} {strategy:18s} label savings {saving:5.2f}x "
                          f"({needed if needed is not None else '>' + str(last)} labels to reach random's "
                          f"{entry['metric']} {entry['random_final']:.3f} ± {random_spread:.3f} at {last}; "
                          f"its own final {curve['mean'][-1]:.3f} ± {curve['std'][-1]:.3f}, ± = seed std)")
        if entry.get("savings_noise_floor", 1.0) > 1.0:
            console.print(f"{name:9s} note: random's mean curve already reached its final score at "
                          f"{round(entry['strategies']['random']['labels'][-1] / entry['savings_noise_floor'])} "
                          f"labels, so a copy of random would show {entry['savings_noise_floor']:.2f}x: savings up "
                          "to that are within random's own curve (more --seeds flatten it)")
        full = entry.get("full_pool")
        if full:
            console.print(f"{name:9s} every pool label ({full['labels']}): {entry['metric']} {full['score']:.3f}"
                          + (f"; random at {entry['strategies']['random']['labels'][-1]} labels: "
                             f"{entry['random_final']:.3f}" if "random_final" in entry else ""))
        if headroom:
            console.print(f"{name:9s} headroom for {headroom['savings']:g}x: "
                          f"{headroom['share_reaching_reference']:.2%} of {headroom['draws']} random "
                          f"{headroom['labels']}-label sets reach the mean of random "
                          f"{headroom['reference_labels']}-label sets ({headroom['reference_mean']:.3f}); they "
                          f"score {headroom['mean']:.3f} ± {headroom['std']:.3f}, 99th percentile {headroom['p99']:.3f}")
    emit(summary, json_output, title="active-learning benchmark")


def bench_retrieval_command(
    n: Annotated[Optional[int], typer.Option(
        "--n", min=1000, help="Number of synthetic database vectors (default 1,000,000; not with --embeddings).")] = None,
    dim: Annotated[Optional[int], typer.Option(
        "--dim", min=2, help="Dimension of the synthetic vectors (default 384; not with --embeddings).")] = None,
    queries: Annotated[int, typer.Option("--queries", min=10, help="Held-out query vectors.")] = 1000,
    embeddings: Annotated[Optional[Path], typer.Option(
        "--embeddings", help="NPZ with real vectors instead of synthetic ones (queries held out from it).")] = None,
    factory: Annotated[Optional[str], typer.Option("--factory", help="Override radloop's index choice.")] = None,
    overrides: OverrideOption = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Index build time, memory, recall@10 vs exact search and queries/s (batched and single)."""
    import numpy as np

    from radloop.retrieval.scale_bench import bench_retrieval, clustered_vectors

    settings = index_config(None, (overrides or []) + ([f"factory={factory}"] if factory else []))
    if embeddings is not None and (n is not None or dim is not None):
        given = " and ".join(option for option, value in (("--n", n), ("--dim", dim)) if value is not None)
        fail(f"{given} describe{'s' if ' and ' not in given else ''} synthetic vectors: with --embeddings the "
             "file's own vectors are indexed, all of them at their dimension (leave out " + given + ")")
    n = 1_000_000 if n is None else n
    dim = 384 if dim is None else dim
    if embeddings is not None:
        _, vectors = _load_npz(embeddings)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) <= queries:
            fail(f"{embeddings} holds {len(vectors)} vectors: need more than --queries {queries}")
        order = np.random.default_rng(seed).permutation(len(vectors))
        database, held_out = vectors[order[queries:]], vectors[order[:queries]]
        data = str(embeddings)
    else:
        say(f"generating {n + queries:,} clustered unit vectors of dimension {dim} (seed {seed})")
        everything = clustered_vectors(n + queries, dim, seed=seed)
        database, held_out = everything[:n], everything[n:]
        data = f"synthetic clustered (1000 clusters, noise 0.6, seed {seed})"
    try:
        result = bench_retrieval(database, held_out, config=settings, progress=say)
    except ValueError as error:
        fail(str(error))
    result["data"] = data
    emit(result, json_output, title="retrieval benchmark")


def bench_selection_command(
    n: Annotated[int, typer.Option("--n", min=10, help="Pool size.")] = 1_000_000,
    dim: Annotated[int, typer.Option("--dim", min=2, help="Dimension of the synthetic vectors.")] = 384,
    budget: Annotated[int, typer.Option("--budget", min=1, help="How many vectors each strategy selects.")] = 1000,
    strategies: Annotated[str, typer.Option(
        "--strategies", help="Comma-separated strategy names (checked before any vector is generated).")
    ] = "kcenter,cluster_margin",
    labelled: Annotated[int, typer.Option("--labelled", min=0, help="Samples labelled beforehand.")] = 0,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Time the NumPy k-center greedy too (only when kcenter is one of the strategies: it is "
                                  "kcenter's reference).")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Time selection strategies at scale against a plain NumPy k-center greedy reference."""
    from radloop.retrieval.scale_bench import bench_selection, clustered_vectors

    names = tuple(name.strip() for name in strategies.split(",") if name.strip())
    if not names:
        fail(f"--strategies {strategies!r} names no strategy")
    from radloop.retrieval.strategies import get_strategy

    for name in names:  # before generating the vectors (a million by default): an unknown name fails at once
        try:
            get_strategy(name)
        except ValueError as error:
            fail(str(error))
    if labelled >= n:
        fail(f"--labelled {labelled} leaves no pool of --n {n}")
    if budget > n - labelled:
        fail(f"--budget {budget} is more than the {n - labelled:,} unlabelled vectors (--n {n} less --labelled "
             f"{labelled}): nothing would be timed at that budget")
    say(f"generating {n:,} clustered unit vectors of dimension {dim} (seed {seed})")
    vectors = clustered_vectors(n, dim, seed=seed)
    try:
        result = bench_selection(vectors, budget, strategies=names,
                                 labelled=labelled, seed=seed, reference=reference, progress=say)
    except ValueError as error:
        fail(str(error))
    emit(result, json_output, title="selection benchmark")
    sys.stdout.flush()


def bench_catalog_command(
    sizes: Annotated[str, typer.Option("--sizes", help="Comma-separated catalog sizes (images).")] = "30000,100000",
    folder: Annotated[Optional[Path], typer.Option(
        "--folder", help="Where the synthetic workspaces are built (default: a temporary folder).")] = None,
    operations: Annotated[Optional[str], typer.Option(
        "--operations", help="Comma-separated subset of: info, overview, index build, search, search --filter, "
                             "embed (nothing to do), round start 1, round finish 1, round start 2, round finish 2, "
                             "round status (default: all).")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the workspaces (default: deleted).")] = False,
    json_output: JsonOption = False,
) -> None:
    """Wall time and peak memory of catalog operations on synthetic archive catalogs (SQLite).

    Measured: info, the overview, index build, search, embed and simulated rounds, one process per operation.
    """
    import tempfile

    from radloop.core.catalog_bench import bench_catalog, check_operations

    try:
        counts = [int(size) for size in sizes.split(",") if size.strip()]
    except ValueError:
        fail(f"--sizes {sizes!r}: comma-separated numbers of images")
    if any(count < 2 for count in counts):
        fail("each size must be at least 2 images (two per study)")
    chosen = None if operations is None else [name.strip() for name in operations.split(",") if name.strip()]
    if chosen is not None and not chosen:
        fail(f"--operations {operations!r} names no operation")
    try:
        check_operations(chosen)  # before any catalog is built
    except ValueError as error:
        fail(f"--operations: {error}")
    with tempfile.TemporaryDirectory(prefix="radloop-bench-catalog-") as temporary:
        result = bench_catalog(counts, folder or Path(temporary), keep=keep and folder is not None,
                               operations=chosen,
                               progress=say)
    emit(result, json_output, title="catalog benchmark")
