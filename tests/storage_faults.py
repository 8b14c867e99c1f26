"""A full disk as the storage libraries meet it, for the tests of what is left on disk afterwards."""

from __future__ import annotations

from contextlib import contextmanager

#: How radloop names a full disk in its errors.
DISK_FULL = "No space left on device (disk full)"


@contextmanager
def safetensors_disk_full():
    """safetensors' ``save_file`` writes half a weights file, then raises what it raises on a full disk (a
    ``SafetensorError``, no OSError); the real one is back after the block."""
    import safetensors.torch
    from safetensors import SafetensorError

    real_save_file = safetensors.torch.save_file

    def half_then_full(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"\x08\x00 half the weights")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    safetensors.torch.save_file = half_then_full
    try:
        yield
    finally:
        safetensors.torch.save_file = real_save_file
