"""Running the ML backend in-process (tests, benchmarks) and measuring ``/predict`` latency over HTTP."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["free_port", "measure_predict", "serve_in_thread"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None,
                    startup_timeout: float = 15.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL; stops it on exit."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"ML backend did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_predict(base_url: str, body: dict, *, requests: int = 50, concurrency: int = 8, warmup: int = 3,
                    headers: dict | None = None) -> dict:
    """p50/p95 latency (ms) of ``POST /predict`` for one task, sequentially and under ``concurrency`` clients."""
    import httpx

    headers = headers or {}

    def _timed(client: httpx.Client) -> float:
        start = time.perf_counter()
        response = client.post(f"{base_url}/predict", json=body, headers=headers)
        elapsed = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            raise RuntimeError(f"/predict answered HTTP {response.status_code}: {response.text[:300]}")
        return elapsed

    with httpx.Client(timeout=60) as client:
        for _ in range(warmup):
            _timed(client)
        sequential = [_timed(client) for _ in range(requests)]
    concurrent: list[float] = []
    lock = threading.Lock()
    per_client = max(1, requests // concurrency)

    def _worker() -> None:
        with httpx.Client(timeout=120) as client:
            mine = [_timed(client) for _ in range(per_client)]
        with lock:
            concurrent.extend(mine)

    threads = [threading.Thread(target=_worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"p50_ms": round(_percentile(sequential, 0.5), 2), "p95_ms": round(_percentile(sequential, 0.95), 2),
            "mean_ms": round(statistics.fmean(sequential), 2),
            "p50_ms_concurrent": round(_percentile(concurrent, 0.5), 2),
            "p95_ms_concurrent": round(_percentile(concurrent, 0.95), 2),
            "throughput_rps_concurrent": round(len(concurrent) / wall, 2),
            "requests": requests, "concurrency": concurrency, "requests_concurrent": len(concurrent)}
