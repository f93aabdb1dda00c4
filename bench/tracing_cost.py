"""What tracing costs: the CNN's single-image native JSON path with ``SERVING_TRACING`` off and on.

``python -m bench.tracing_cost`` starts our servers side by side over the same repository (the CNN of
``--repo``, else the synthetic CNN of :mod:`bench.synthetic`): one with tracing off (the default) and one
with tracing on per sample ratio of ``--ratios`` (1.0: every request makes 4 spans), exporting over
OTLP/HTTP to a sink in this process that answers every export at once (the export's serialization and
sending are counted, no collector's work). wrk drives them in turns, ``--rounds`` times (the order
rotates every round, so a drift of the shared machine hits all), and the command prints req/s and p99
per run and their median and spread per mode. The off-vs-previous-commit comparison is the main benchmark's (``python -m bench``).

Example::

    .venv/bin/python -m bench.tracing_cost --rounds 3 --duration 5 --concurrency 16 --ratios 1,0.1
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import sidebyside
from bench.sidebyside import errors, report, run_rounds, save_json, start_server, stop_all, wait_all


class Sink(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint that reads each export and answers 200 (counting exports and bytes)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.exports = 0
        self.bytes = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _SinkHandler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", 0))
        self.rfile.read(size)
        self.server.exports += 1
        self.server.bytes += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = sidebyside.parser("python -m bench.tracing_cost", __doc__)
    ap.add_argument("--ratios", default="1.0", help="comma list of SERVING_TRACING_SAMPLE_RATIO to run on")
    ap.add_argument("--json", type=Path, help="also write the runs and medians here")
    a = ap.parse_args(argv)
    ratios = [float(r) for r in a.ratios.split(",") if r]
    ready = sidebyside.setup(a, "tracing-cost-")
    if ready is None:
        return 2
    work, model, scenario, script = ready
    repo = model.onnx_path.parents[2]
    sink = Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    servers = {"off": start_server(repo, work / "off", a.workers, SERVING_TRACING="off")}
    for ratio in ratios:
        servers[f"on@{ratio:g}"] = start_server(
            repo, work / f"on-{ratio:g}", a.workers, SERVING_TRACING="otlp", SERVING_TRACING_ENDPOINT=sink.url,
            SERVING_TRACING_SAMPLE_RATIO=str(ratio),
        )  # fmt: skip
    try:
        wait_all(servers, scenario)
        print(f"model {model.name} v{model.version}, native JSON, {a.concurrency} connections, "
              f"{a.workers} workers per server, {a.rounds} x {a.duration:g} s per mode")  # fmt: skip
        runs = run_rounds(servers, scenario, script, a.rounds, a.concurrency, a.duration, a.warmup)
    finally:
        stop_all(servers)
        sink.shutdown()
    medians = report(runs)
    print(f"OTLP exports received: {sink.exports} ({sink.bytes:,} bytes)")
    if a.json:
        save_json(a.json, a, medians, runs, exports=sink.exports, export_bytes=sink.bytes)
    return 1 if errors(runs) or (max(ratios, default=0) > 0 and sink.exports == 0) else 0


if __name__ == "__main__":
    sys.exit(main())
