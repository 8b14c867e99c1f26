"""bf16 on a CPU without native bf16 runs in fp32 (emulated bf16 is several times slower there)."""

from __future__ import annotations

import logging

from radloop.ssl.precision import cpu_has_native_bf16, effective_precision

AVX2_ONLY = "processor : 0\nflags : fpu sse sse2 avx avx2 fma\n"
SAPPHIRE_RAPIDS = "processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(AVX2_ONLY) is False
    assert cpu_has_native_bf16(SAPPHIRE_RAPIDS) is True
    assert cpu_has_native_bf16("processor : 0\n") is None  # no flags line: unknown


def test_bf16_on_a_cpu_without_native_bf16_runs_in_fp32(caplog):
    with caplog.at_level(logging.WARNING, logger="radloop.ssl.precision"):
        assert effective_precision("bf16-mixed", "cpu", native_bf16=False) == "32-true"
        assert effective_precision("bf16-true", "cpu", native_bf16=False) == "32-true"
    assert "without native bf16" in caplog.text and "32-true" in caplog.text


def test_other_precisions_gpus_and_unknown_cpus_keep_the_config(monkeypatch):
    import radloop.ssl.precision as precision

    assert effective_precision("bf16-mixed", "cpu", native_bf16=True) == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: None)  # flags unreadable: keep the config
    assert effective_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert effective_precision("bf16-mixed", "gpu", native_bf16=False) == "bf16-mixed"
    assert effective_precision("16-mixed", "cpu", native_bf16=False) == "16-mixed"
    assert effective_precision("32-true", "cpu", native_bf16=False) == "32-true"
    assert effective_precision(32, "cpu", native_bf16=False) == 32
