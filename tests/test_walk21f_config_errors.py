"""Config errors a researcher editing ``configs/*.yaml`` meets: every problem is one line naming the file's line
(or the ``--set`` override), the dotted key, what is wrong and what was likely meant; YAML's traps (a key written
twice, tabs, base-60 numbers) are caught when the file is read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radloop.app.round_record import RoundConfig
from radloop.core.config import ConfigError, apply_overrides, did_you_mean, load_config
from radloop.retrieval.index_config import IndexConfig
from radloop.ssl.finetune_bench import BenchConfig
from radloop.ssl.finetune_config import TrainConfig
from radloop.ssl.settings import PretrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SIMCLR = CONFIGS / "ssl" / "simclr_cpu.yaml"
PROBE = CONFIGS / "finetune" / "probe_cpu.yaml"


def _model_of(file: Path):
    folder = file.parent.name
    if folder == "finetune":
        return BenchConfig if file.name.startswith("bench_") else TrainConfig
    return {"ssl": PretrainConfig, "retrieval": IndexConfig, "rounds": RoundConfig}[folder]


SHIPPED = sorted(CONFIGS.rglob("*.yaml"))


def _error(path, model, overrides=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, model, overrides)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ one line, no pydantic
@pytest.mark.parametrize(("model", "path", "overrides", "expected"), [
    (TrainConfig, PROBE, ["data.max_train_images=1"],
     f"invalid config {PROBE} with --set data.max_train_images=1: data.max_train_images=1: a probe head needs at "
     "least 2 training images, one with and one without fracture; set data.max_train_images=2 or more"),
    (RoundConfig, None, ["pool_split=test"],
     "invalid config defaults with --set pool_split=test: pool_split and eval_split are both 'test': a round would "
     "select (and train on) images of the split its metric is measured on; set pool_split (e.g. 'train') and "
     "eval_split (e.g. 'test') to different splits"),
    (PretrainConfig, SIMCLR, ["trainer.max_steps=null"],
     f"invalid config {SIMCLR} with --set trainer.max_steps=null: set trainer.max_steps or trainer.max_epochs"),
    (PretrainConfig, SIMCLR, ["trainer.strategy=ddp_spawn"],
     f"invalid config {SIMCLR}, --set trainer.strategy=ddp_spawn: trainer.strategy: strategy 'ddp_spawn' is not "
     "supported for pretraining (the step count and the final checkpoint stay in its child processes): use ddp (it "
     "re-runs the command once per device), torchrun or srun"),
], ids=["model-level", "model-level-no-file", "section-level", "field-validator"])
def test_a_validator_error_is_one_line_without_pydantic_wording(model, path, overrides, expected):
    """It read "<root>: Value error, data.max_train_images=1: ..." on a line under "invalid config ...:"."""
    assert _error(path, model, overrides) == expected


# ------------------------------------------------------------------------------------------ did you mean
@pytest.mark.parametrize(("model", "override", "expected"), [
    (PretrainConfig, "trainer.max_step=5", "unknown key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    (PretrainConfig, "data.batchsize=5", "unknown key 'data.batchsize' (did you mean 'data.batch_size'?)"),
    (RoundConfig, "strategy_param={a: 1}", "unknown key 'strategy_param' (did you mean 'strategy_params'?)"),
    (PretrainConfig, "trainer.batch_size=5", "unknown key 'trainer.batch_size' (did you mean 'data.batch_size'?)"),
    (PretrainConfig, "method=mea", "method: Input should be 'mae' or 'simclr' (got 'mea'; did you mean 'mae'?)"),
    (PretrainConfig, "model.pooling=avg", "(got 'avg'; did you mean 'avg_tokens'?)"),
    (PretrainConfig, "trainer.precision=16mixed", "trainer.precision: precision '16mixed' is not one of 32-true, "),
    (PretrainConfig, "trainer.precision=16mixed", "(did you mean '16-mixed'?)"),
    (PretrainConfig, "trainer.accelerator=gpus",
     "trainer.accelerator: accelerator 'gpus' is not one of auto, cpu, gpu, cuda, mps (did you mean 'gpu'?)"),
    (TrainConfig, "trainer.accelerator=gpus", "(got 'gpus'; did you mean 'gpu'?)"),
    (TrainConfig, "trainer.precision=bf16mixed", "(did you mean 'bf16-mixed'?)"),
    (TrainConfig, "head=prob", "head: Input should be 'probe', 'finetune' or 'detect' (got 'prob'; did you mean "
                               "'probe'?)"),
    (TrainConfig, "data.findings=[fractur]", "unknown finding(s) ['fractur'] (did you mean 'fracture'?); valid: "),
    (IndexConfig, "metric=cos", "metric: Input should be 'cosine' or 'l2' (got 'cos'; did you mean 'cosine'?)"),
    (PretrainConfig, "nonsense=1", "unknown key 'nonsense'; the keys at the top level are name, method, seed, "),
])
def test_a_near_miss_key_or_value_gets_a_suggestion_naming_the_override(model, override, expected):
    path = {PretrainConfig: SIMCLR, TrainConfig: PROBE}.get(model)
    message = _error(path, model, [override])
    where = f"invalid config {path}, --set {override}: " if path else f"invalid config --set {override}: "
    assert message.startswith(where) and expected in message and "\n" not in message, message


def test_file_errors_name_the_line_and_each_problem_gets_its_own_line(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text("method: simclr\ntrainer:\n  max_steps: 10\n  max_epoch: 2\nbatch_size: 32\n"
                    "data:\n  splits:\n    - train\n    - tset\n")
    assert _error(file, PretrainConfig).splitlines() == [
        f"invalid config {file}, line 4: unknown key 'trainer.max_epoch' (did you mean 'trainer.max_epochs'?)",
        f"invalid config {file}, line 5: unknown key 'batch_size' (did you mean 'data.batch_size'?)",
        f"invalid config {file}, line 9: data.splits.1: Input should be 'train', 'val' or 'test' (got 'tset'; did "
        f"you mean 'test'?)"]


def test_a_section_given_a_value_or_nothing_says_so(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text("method: simclr\ntrainer:\nseed: 1\n")
    message = _error(file, PretrainConfig)
    assert message.startswith(f"invalid config {file}, line 2: trainer is empty (null): write its settings indented "
                              f"under it (accelerator, devices, "), message
    assert "Input should be a valid dictionary" not in message
    message = _error(SIMCLR, PretrainConfig, ["data=5"])
    assert message.startswith(f"invalid config {SIMCLR}, --set data=5: data is a section of settings (datasets, "
                              f"splits, "), message
    assert message.endswith("not a single value (got 5)")
    file.write_text("method: simclr\ntrainer:\n  - max_steps: 3\n")
    message = _error(file, PretrainConfig)
    assert message.startswith(f"invalid config {file}, line 2: trainer is a section of settings (accelerator, ")
    assert message.endswith("not a list: write its key: value lines without '-'")


def test_precision_written_as_a_number_is_read_as_lightning_reads_it(tmp_path):
    """`precision: 16` is an int in YAML: pretraining refused it with "Input should be a valid string"."""
    assert load_config(None, PretrainConfig, ["trainer.precision=16"]).trainer.precision == "16"
    assert load_config(None, TrainConfig, ["name=x", "head=probe", "trainer.precision=16"]).trainer.precision == "16"


def test_did_you_mean_is_empty_without_a_close_choice():
    assert did_you_mean("zzz", ["badge", "margin"]) == ""
    assert did_you_mean("marign", ["badge", "margin"]) == " (did you mean 'margin'?)"
    assert did_you_mean("m", ["margin", "mae"]) == ""  # two choices start so: no guess


def test_an_unknown_strategy_gets_a_suggestion():
    from radloop.retrieval.strategies import get_strategy

    with pytest.raises(ValueError, match=r"unknown selection strategy 'bdge' \(did you mean 'badge'\?\); valid: "):
        get_strategy("bdge")


# ------------------------------------------------------------------------------------------ YAML traps
@pytest.mark.parametrize("file", SHIPPED, ids=lambda file: f"{file.parent.name}/{file.name}")
def test_every_shipped_config_loads_and_a_duplicated_key_in_it_is_refused(file, tmp_path):
    """PyYAML keeps the last of two equal keys without a word: a tuned value written above was dropped."""
    model = _model_of(file)
    load_config(file, model)
    text = file.read_text()
    first = next(line for line in text.splitlines() if line and not line.startswith(("#", " ", "-")))
    copy = tmp_path / file.name
    copy.write_text(text + "\n" + first + "\n")
    key = first.split(":", 1)[0]
    line = text.splitlines().index(first) + 1
    message = _error(copy, model)
    assert message.startswith(f"config file {copy} sets {key!r} twice (lines {line} and "), message
    assert message.endswith("YAML would silently keep only the last one; remove one of them")


@pytest.mark.parametrize("file", SHIPPED, ids=lambda file: f"{file.parent.name}/{file.name}")
def test_every_shipped_config_with_a_misspelt_key_names_its_line_and_the_key(file, tmp_path):
    model = _model_of(file)
    lines = file.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line and not line.startswith(("#", " ", "-")))
    key = lines[index].split(":", 1)[0]
    lines[index] = key + "x" + lines[index][len(key):]
    copy = tmp_path / file.name
    copy.write_text("\n".join(lines) + "\n")
    message = _error(copy, model)
    assert f"invalid config {copy}, line {index + 1}: unknown key '{key}x' (did you mean '{key}'?)" in message, message


def test_a_nested_duplicate_names_its_dotted_key_and_both_lines(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text("method: mae\ntrainer:\n  max_steps: 10\n  precision: 32-true\n  max_steps: 20\n")
    assert _error(file, PretrainConfig) == (f"config file {file} sets 'trainer.max_steps' twice (lines 3 and 5): YAML "
                                            "would silently keep only the last one; remove one of them")
    merged = tmp_path / "merged.yaml"  # a merge key is how YAML overrides on purpose: not a duplicate
    merged.write_text("trainer: &t\n  max_steps: 3\n  precision: 32-true\n")
    assert load_config(merged, PretrainConfig).trainer.max_steps == 3


@pytest.mark.parametrize("text", ["trainer:\n\tmax_steps: 10\n", "trainer:\n  max_steps:\t10\n"],
                         ids=["indent", "after-colon"])
def test_a_tab_is_named_as_the_problem(tmp_path, text):
    file = tmp_path / "job.yaml"
    file.write_text(text)
    message = _error(file, PretrainConfig)
    assert message.startswith(f"config file {file} is not valid YAML (line 2, column ")
    assert message.endswith("YAML indents and separates with spaces, not tabs; replace the tab(s) on that line")


def test_a_time_is_not_read_as_a_base_60_number(tmp_path):
    """YAML 1.1 read `max_time: 1:00:00:00` as the integer 216000, refused as "Input should be a valid string"."""
    file = tmp_path / "job.yaml"
    file.write_text("trainer:\n  max_steps: 10\n  max_time: 1:00:00:00\n")
    assert load_config(file, PretrainConfig).trainer.max_time == "1:00:00:00"
    assert load_config(None, PretrainConfig, ["trainer.max_time=2:30:00:00"]).trainer.max_time == "2:30:00:00"
    assert load_config(None, PretrainConfig, ["optim.lr=0.5", "seed=0x10"]).seed == 16  # other numbers as before


# ------------------------------------------------------------------------------------------ overrides
@pytest.mark.parametrize(("override", "expected"), [
    ("a..b=1", "--set a..b=1: the key 'a..b' has an empty part (two dots in a row, or a dot at an end): write it "
               "as 'a.b'"),
    ("trainer.=1", "--set trainer.=1: the key 'trainer.' has an empty part"),
    (".seed=1", "--set .seed=1: the key '.seed' has an empty part"),
    ("=x", "--set =x: no key before '=' (it must look like key.path=value)"),
    ("seed", "--set seed: an override must look like key.path=value (e.g. trainer.max_steps=100)"),
    ("data.batch_size.x=5", "--set data.batch_size.x=5: 'data.batch_size' is a value (64), not a section with keys"),
    ("seed=[1", "--set seed=[1: the value is not valid YAML"),
])
def test_malformed_overrides_are_refused_naming_them(override, expected):
    """`a..b=1` used to set a.b silently."""
    message = _error(SIMCLR, PretrainConfig, [override])
    assert message.startswith(expected), message


def test_an_empty_value_sets_null_and_says_it_got_null():
    assert apply_overrides({"data": {"limit": 5}}, ["data.limit="]) == {"data": {"limit": None}}
    assert _error(SIMCLR, PretrainConfig, ["data.batch_size="]) == (
        f"invalid config {SIMCLR}, --set data.batch_size=: data.batch_size: Input should be a valid integer "
        "(got null)")


def test_the_last_of_two_overrides_of_a_key_is_named():
    message = _error(SIMCLR, PretrainConfig, ["data.batch_size=8", "data.batch_size=abc"])
    assert message.startswith(f"invalid config {SIMCLR}, --set data.batch_size=abc: data.batch_size: "), message


def test_the_config_loader_stays_safe():
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides({}, ["seed=!!python/object/apply:os.system ['true']"])
    assert yaml.safe_load("a: 1") == {"a": 1}  # the module's own loader does not change PyYAML's


def test_an_override_into_a_section_the_file_leaves_out_keeps_that_sections_defaults(tmp_path):
    """`--set trainer.precision=bf16-mixed` on a file without `trainer:` replaced the default trainer (1000 steps)
    by one of that single setting, refused with "set trainer.max_steps or trainer.max_epochs"."""
    file = tmp_path / "job.yaml"
    file.write_text("method: simclr\n")
    trainer = load_config(file, PretrainConfig, ["trainer.precision=bf16-mixed"]).trainer
    assert trainer.max_steps == PretrainConfig().trainer.max_steps == 1000 and trainer.precision == "bf16-mixed"
    assert load_config(None, PretrainConfig, ["trainer.num_threads=1"]).trainer.max_steps == 1000
    job = load_config(None, TrainConfig, ["name=x", "head=probe", "data.weak_labels.use=true"])
    assert job.data.weak_labels.use and job.data.findings == ["fracture"]


def test_a_bench_override_is_named_as_it_was_written():
    """`--set bench.fraction=[1.0]` was reported as "--set fraction=[1.0]" (the prefix taken off)."""
    from radloop.ssl.finetune_bench import run_bench

    bench = CONFIGS / "finetune" / "bench_cpu.yaml"
    with pytest.raises(ConfigError) as caught:
        run_bench(None, bench, ["bench.fraction=[1.0]", "data.max_eval_images=3"], progress=False)
    assert str(caught.value) == (f"invalid config {bench}, --set bench.fraction=[1.0]: unknown key 'fraction' (did "
                                 "you mean 'fractions'?)")
    assert load_config(bench, BenchConfig, ["bench.seed=4"], prefix="bench.").seed == 4


def test_a_date_like_value_stays_text(tmp_path):
    """`name: 2024-05-01` was read as a date and stopped loading with "TypeError: Object of type date is not JSON
    serializable" (a traceback, not a config error)."""
    file = tmp_path / "job.yaml"
    file.write_text("method: simclr\nname: 2024-05-01\n")
    assert load_config(file, PretrainConfig).name == "2024-05-01"
    assert load_config(None, PretrainConfig, ["name=2024-05-02"]).name == "2024-05-02"


def test_a_missing_key_and_a_scalar_for_a_list_say_what_to_write(tmp_path):
    """They read "name: Field required" and "data.findings: Input should be a valid list"."""
    file = tmp_path / "job.yaml"
    file.write_text("head: probe\ndata:\n  findings: fracture\n")
    assert _error(file, TrainConfig).splitlines() == [
        f"invalid config {file}: missing required key 'name'",
        f"invalid config {file}, line 3: data.findings: Input should be a valid list (got 'fracture'; write a list: "
        f"[fracture])"]


def test_a_key_of_several_sections_written_at_the_top_names_them_all():
    message = _error(PROBE, TrainConfig, ["batch_size=8"])
    assert message == (f"invalid config {PROBE}, --set batch_size=8: unknown key 'batch_size' (did you mean "
                       "'probe.batch_size', 'finetune.batch_size' or 'detect.batch_size'?)")


def test_an_override_into_a_section_left_empty_in_the_file_fills_it(tmp_path):
    """It failed with "'trainer' is a value (None), not a section"."""
    file = tmp_path / "job.yaml"
    file.write_text("method: simclr\ntrainer:\n")
    assert load_config(file, PretrainConfig, ["trainer.max_steps=3"]).trainer.max_steps == 3
    assert load_config(file, PretrainConfig, ["trainer.num_threads=1"]).trainer.max_steps == 1000  # the defaults
