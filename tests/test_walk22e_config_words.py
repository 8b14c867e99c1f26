"""Walk 22e: YAML 1.1's boolean words in text settings, and errors of a bench file's own ``overrides:`` entries.

``--set name=no`` (or on, off, yes) reached a text setting as the boolean False/True ("Input should be a valid
string (got False)"); a file's ``name: no`` too.  A bench file's ``overrides:`` entry was reported as ``--set``.
"""

from __future__ import annotations

import pytest

from radloop.core.config import ConfigError, load_config, save_resolved_config, shipped_configs
from radloop.ssl.finetune_config import TrainConfig
from radloop.ssl.settings import PretrainConfig

PROBE = "configs/finetune/probe_cpu.yaml"


def test_set_keeps_the_word_where_the_setting_is_text_and_booleans_stay_booleans(tmp_path):
    config = load_config(PROBE, TrainConfig, ["name=no", "task=On", "data.dataset=off", "encoder.version=yes",
                                              "make_current=no", "data.body_region=off", "data.weak_labels.use=yes"])
    assert (config.name, config.task, config.data.dataset, config.encoder.version) == ("no", "On", "off", "yes")
    assert (config.make_current, config.data.body_region, config.data.weak_labels.use) == (False, False, True)
    assert load_config(PROBE, TrainConfig, ["name=n", "make_current=true"]).name == "n"  # y/n were never booleans
    pretrain = load_config("configs/ssl/simclr_cpu.yaml", PretrainConfig, ["model.timm_name=off"])
    assert pretrain.model.timm_name == "off"
    # a whole section set at once, and the resolved config written next to a model reads back the same
    config = load_config(PROBE, TrainConfig, ["data={dataset: no, body_region: no}"])
    assert (config.data.dataset, config.data.body_region) == ("no", False)
    saved = save_resolved_config(load_config(PROBE, TrainConfig, ["name=off"]), tmp_path / "config.yaml")
    assert load_config(saved, TrainConfig).name == "off"


def test_a_files_unquoted_word_in_a_text_setting_is_refused_with_its_line(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: no\nhead: probe\ndata:\n  dataset: On\n  body_region: no\n")
    with pytest.raises(ConfigError) as refused:
        load_config(job, TrainConfig)
    assert str(refused.value).splitlines() == [
        (f"invalid config {job}, line 1: name: YAML reads the unquoted word no as the boolean false, but this "
         'setting is text: quote it ("no") to keep the word'),
        (f"invalid config {job}, line 4: data.dataset: YAML reads the unquoted word On as the boolean true, but "
         'this setting is text: quote it ("On") to keep the word')]
    # overridden on the command line: nothing to refuse; quoted: the word
    config = load_config(job, TrainConfig, ["name=x", "data.dataset=y"])
    assert (config.name, config.data.dataset, config.data.body_region) == ("x", "y", False)
    job.write_text('name: "no"\nhead: probe\n')
    assert load_config(job, TrainConfig).name == "no"


def _bench(tmp_path, *entries: str):
    bench = tmp_path / "bench.yaml"
    job = shipped_configs() / "finetune" / "probe_cpu.yaml"
    bench.write_text(f"heads:\n  probe: {job}\nfractions: [1.0]\ninits: [random]\noverrides:\n"
                     + "".join(f"  - {entry}\n" for entry in entries))
    return bench


def test_a_bench_files_own_override_is_named_with_the_file_and_its_line(tmp_path):
    from radloop.ssl.finetune_bench import run_bench

    bench = _bench(tmp_path, "data.max_eval_images=10", "data.max_eval_imgs=4")
    job = shipped_configs() / "finetune" / "probe_cpu.yaml"
    with pytest.raises(ConfigError) as refused:
        run_bench(None, bench, ["data.max_train_images=5"])
    assert str(refused.value) == (
        f"invalid config {job}, overrides entry 'data.max_eval_imgs=4' of bench file {bench}, line 7: unknown key "
        "'data.max_eval_imgs' (did you mean 'data.max_eval_images'?)")
    with pytest.raises(ConfigError) as refused:
        run_bench(None, _bench(tmp_path, "finetune.lr=0.1", "nonsense"), [])
    assert str(refused.value) == (f"overrides entry 'nonsense' of bench file {bench}, line 7: an override must look "
                                  "like key.path=value (e.g. trainer.max_steps=100)")
    # the command line's own overrides are still --set ones, a replaced list names the --set that gave it
    with pytest.raises(ConfigError, match=rf"^invalid config {job}, --set data.max_eval_images=0: "):
        run_bench(None, _bench(tmp_path, "finetune.lr=0.1"), ["data.max_eval_images=0"])
    replaced = "bench.overrides=[data.max_eval_images=x]"
    with pytest.raises(ConfigError, match=r"overrides entry 'data.max_eval_images=x' \(from --set bench.overrides="):
        run_bench(None, _bench(tmp_path, "finetune.lr=0.1"), [replaced])
