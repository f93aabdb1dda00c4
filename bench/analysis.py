"""Ratios, targets and memory figures computed from the raw results (``results.json``'s ``servers``)."""

from __future__ import annotations

from typing import Any

from bench import config as C

BINARY = f"v2-binary-x{C.BATCH_IMAGES}"
INT8 = "ours-int8"
"""Ours serving the int8 variant: its targets are checked beside fp32's, labelled ``(int8)``."""


def point(servers: list[dict[str, Any]], server: str, scenario: str, c: int) -> dict[str, Any] | None:
    for s in servers:
        if s["server"] == server:
            for p in s["points"]:
                if p["scenario"] == scenario and p["connections"] == c:
                    return p
    return None


def single_image_points(servers: list[dict[str, Any]], c: int) -> dict[str, dict[str, Any]]:
    """``"server / scenario"`` -> point at ``c`` for every one-image scenario."""
    return {
        f"{s['server']} / {p['scenario']}": p
        for s in servers
        for p in s["points"]
        if p["connections"] == c and p["images_per_request"] == 1
    }


def ratios(servers: list[dict[str, Any]], c: int = 64, ours_server: str = "ours") -> dict[str, Any]:
    """ours (native JSON) over the naive BentoML baseline and over the best peer, at ``c`` clients
    (``ours_server``: ``ours``, or :data:`INT8` for the int8 variant's figures)."""
    ours = point(servers, ours_server, "native-json", c)
    out: dict[str, Any] = {"connections": c, "ours_rps": ours["rps"] if ours else None}
    peers = {}
    for s in servers:
        if s["server"] in C.PEERS:
            ps = [p for p in s["points"] if p["connections"] == c and p["images_per_request"] == 1]
            if ps:
                peers[s["server"]] = max(p["rps"] for p in ps)
    out["peers_rps"] = peers
    if ours and peers:
        best = max(peers, key=lambda k: peers[k])
        out["best_peer"] = best
        out["ours_over_best_peer"] = ours["rps"] / peers[best]
        for name, rps in peers.items():
            out[f"ours_over_{name}"] = ours["rps"] / rps if rps else None
    ours_v2 = point(servers, ours_server, "v2-json", c)
    if ours_v2 and "pytriton" in peers:
        out["ours_v2_json_over_pytriton"] = ours_v2["rps"] / peers["pytriton"]
    bare = point(servers, "bare-asgi", "v2-json", c)
    if ours_v2 and bare and bare["rps"]:
        out["ours_v2_json_over_bare_asgi"] = ours_v2["rps"] / bare["rps"]
    return out


def _target(
    name: str, value: float | None, goal: float, higher_is_better: bool, unit: str, note: str = ""
) -> dict:
    row: dict[str, Any] = {"target": name, "goal": goal, "unit": unit, "value": value, "note": note}
    if value is None:
        row.update(met=None, verdict="not measured")
        return row
    met = value >= goal if higher_is_better else value <= goal
    if goal == 0:
        row.update(met=met, verdict="met" if met else f"MISSED ({value:g} {unit})")
        return row
    margin = (value / goal - 1) if higher_is_better else (1 - value / goal)
    row.update(met=met, margin_pct=round(100 * margin, 1))
    row["verdict"] = (
        f"met ({abs(margin) * 100:.0f} % better than the goal)"
        if met
        else f"MISSED by {abs(margin) * 100:.0f} %"
    )
    return row


def ours_memory(servers: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest RSS of each of our BentoML workers over all measured points, and of the whole tree."""
    per: dict[str, float] = {}
    total = 0.0
    for s in servers:
        if s["server"] != "ours":
            continue
        for p in s["points"]:
            total = max(total, p["server_rss_mb"])
            for proc in p["processes"]:
                if proc["name"].startswith("bentoml-worker"):
                    per[proc["name"]] = max(per.get(proc["name"], 0.0), proc["rss_mb"])
    return {
        "worker_rss_mb": per,
        "max_worker_rss_mb": max(per.values()) if per else None,
        "total_rss_mb": total or None,
    }


def targets(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target with its measured value and verdict: ours (fp32), then the same targets for the
    int8 variant where :data:`INT8` was measured (memory only once: the variant changes little there)."""
    rows = _targets_of(servers, "ours", "")
    rows.append(
        _target(
            "RSS per worker", ours_memory(servers)["max_worker_rss_mb"], C.TARGET_RSS_MB_WORKER, False, "MB"
        )
    )
    if any(s["server"] == INT8 and s.get("points") for s in servers):
        rows += _targets_of(servers, INT8, " (int8)")
    return rows


def _targets_of(servers: list[dict[str, Any]], server: str, label: str) -> list[dict[str, Any]]:
    p64 = point(servers, server, "native-json", 64)
    r = ratios(servers, 64, server)
    c1 = point(servers, server, "native-json", 1)
    binary = [p for s in servers if s["server"] == server for p in s["points"] if p["scenario"] == BINARY]
    best_bin = max(binary, key=lambda p: p["images_per_s"]) if binary else None
    server_p50 = (c1 or {}).get("server_side", {}).get("p50_ms")
    errors = None if p64 is None else p64["non2xx"] + p64["socket_errors"]
    return [
        _target(f"CNN single image JSON, 64 clients: throughput{label}", p64 and p64["rps"], C.TARGET_RPS_64, True, "req/s"),
        _target(f"CNN single image JSON, 64 clients: p99{label}", p64 and p64["p99_ms"], C.TARGET_P99_MS_64, False, "ms"),
        _target(f"CNN single image JSON, 64 clients: non-2xx + socket errors{label}", errors, 0, False, "count"),
        _target(f"ours / PyTriton at 64 clients{label}", r.get("ours_over_pytriton"), C.TARGET_X_PYTRITON, True, "×"),
        _target(f"ours / naive BentoML at 64 clients{label}", r.get("ours_over_naive-bentoml"), C.TARGET_X_NAIVE, True, "×"),
        _target(f"V2 binary, {C.BATCH_IMAGES} images/request{label}", best_bin and best_bin["images_per_s"],
                C.TARGET_BINARY_IMAGES_S, True, "images/s",
                f"best at c={best_bin['connections']}" if best_bin else ""),
        _target(f"concurrency 1: client-side p50 (wrk){label}", c1 and c1["p50_ms"], C.TARGET_CLIENT_P50_MS_C1, False,
                "ms", f"server-side p50 (our histogram) {server_p50:.3f} ms" if server_p50 else ""),
    ]  # fmt: skip
