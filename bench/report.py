"""``report.md``: the results table, ratios, targets, memory, ceilings, profile and setup of one run."""

from __future__ import annotations

from typing import Any

from bench import analysis


def _f(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def imbalanced(p: dict[str, Any]) -> bool:
    """Several worker processes share a listening socket, but one of them holds (nearly) every connection."""
    conns = [q["connections"] for q in p["processes"] if "worker" in q["name"] and "tracker" not in q["name"]]
    return len(conns) >= 2 and p["connections"] >= 16 and max(conns) >= 0.9 * p["connections"]


def _codes(p: dict[str, Any]) -> str:
    odd = {k: v for k, v in p.get("server_codes", {}).items() if k != "200"}
    return str(p["non2xx"]) + (" (" + ", ".join(f"{k}×{v}" for k, v in odd.items()) + ")" if odd else "")


def _procs(p: dict[str, Any]) -> str:
    shown = [q for q in p["processes"] if q["cpu_pct"] >= 1 or q["connections"]]
    flag = " ⚠ one worker took all connections" if imbalanced(p) else ""
    return flag.lstrip() + ("; " if flag else "") + "; ".join(f"{q['name']} {q['cpu_pct']:.0f} %" + (f" ({q['connections']} c)" if q["connections"] else "")
                     for q in shown)  # fmt: skip


def results_table(servers: list[dict[str, Any]]) -> list[str]:
    rows = ["| server | scenario | c | req/s | images/s | p50 ms | p99 ms | non-2xx | sock err | server CPU % "
            "| per process: CPU % (connections) | wrk CPU % | other CPU % |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|"]  # fmt: skip
    for s in servers:
        for p in s["points"]:
            rows.append(
                f"| {s['server']} | {p['scenario']} | {p['connections']} | {_f(p['rps'], 0)} | "
                f"{_f(p['images_per_s'], 0)} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {_codes(p)} | "
                f"{p['socket_errors']} | {p['server_cpu_pct']:.0f} | {_procs(p)} | {p['client_cpu_pct']:.0f} | "
                f"{p['other_cpu_pct']:.0f} |"
            )
    return rows


def ratio_lines(r: dict[str, Any], ours: str = "ours") -> list[str]:
    if r.get("ours_rps") is None:
        return ["Our service was not measured at this concurrency."]
    lines = [
        f"At {r['connections']} clients, {ours} (native JSON, one image) = {_f(r['ours_rps'], 0)} req/s."
    ]
    for name, rps in r["peers_rps"].items():
        lines.append(f"- {ours} / {name}: **{r[f'ours_over_{name}']:.2f}×** ({_f(rps, 0)} req/s)")
    if "best_peer" in r:
        lines.append(f"- {ours} / best peer ({r['best_peer']}): **{r['ours_over_best_peer']:.2f}×**")
    if "ours_v2_json_over_pytriton" in r:
        lines.append(f"- same protocol (V2 JSON): ours / pytriton {r['ours_v2_json_over_pytriton']:.2f}×")
    if r.get("ours_v2_json_over_bare_asgi"):
        lines.append(
            f"- ours (V2 JSON) / bare-ASGI ceiling (V2 JSON): {r['ours_v2_json_over_bare_asgi']:.2f}×"
        )
    return lines


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    if profile.get("status") != "ok":
        return [f"Profiling unavailable: {profile.get('reason')}"]
    w = profile["wrk"]
    lines = [f"`py-spy record` (250 Hz, {profile['seconds']:.0f} s) on each worker of ours while wrk drove "
             f"{profile['scenario']} at 64 connections ({_f(w.get('rps'), 0)} req/s during the profile, "
             f"py-spy's own overhead included). CPU per process: "
             + "; ".join(f"{q['name']} {q['cpu_pct']:.0f} % ({q['connections']} c)" for q in profile["processes"]),
             "", "Caveat: `Runner.run` (asyncio) and `_worker` (concurrent.futures) leaf frames are mostly time in C "
             "below them: uvloop's loop (socket I/O, but also epoll waits) and the runtime thread waiting on its "
             "queue; py-spy cannot always tell such waits from work.", ""]  # fmt: skip
    for worker in profile["workers"]:
        lines.append(f"**{worker['process']}** ({worker.get('samples', 0)} samples, raw stacks in "
                     f"`profiles/{worker['raw_file']}`)")  # fmt: skip
        if "error" in worker:
            lines += [f"py-spy failed: {worker['error']}", ""]
            continue
        for key, title in (("self_by_category", "self time by library"), ("inclusive_layers", "inclusive"),
                           ("top_leaf_frames", "hottest leaf frames")):  # fmt: skip
            lines.append(f"- {title}: " + ", ".join(f"{k} {v} %" for k, v in worker[key][:10]))
        lines.append("")
    return lines


def _quiet(q: dict[str, Any]) -> str:
    if "load1" not in q:
        return "skipped"
    state = "quiet" if q["quiet"] else "NOT quiet (gave up waiting)"
    others = f", others running: {q['foreign']}" if q["foreign"] else ""
    return f"{state}, 1-min load {q['load1']} after waiting {q['waited_s']} s{others}"


def render(doc: dict[str, Any], notes: str = "") -> str:
    """The markdown report of ``doc`` (the content of ``results.json``)."""
    servers, env, cfg = doc["servers"], doc["environment"], doc["config"]
    r64, tg, mem = doc["ratios"], doc["targets"], doc["ours_memory"]
    out = [f"# Serving benchmark, {env['date']}", ""]
    out += [f"Model `{doc['model']['name']}` version {doc['model']['version']} (`{doc['model']['onnx_path']}`), "
            f"input `{doc['model']['input_name']}` {doc['model']['input_shape']}, output `{doc['model']['output_name']}`. "
            f"Commit `{env['commit']}`. Machine: {env['cpu']}, {env['cores']} cores, {env['mem_gb']} GB. "
            f"Load generator: wrk {cfg['wrk_threads']} thread(s) pinned with `taskset -c {cfg['client_cpu']}`, "
            f"warm-up {cfg['warmup_s']:g} s then {cfg['duration_s']:g} s per point; servers unpinned (both cores), "
            f"{cfg['workers']} workers where the server has that setting. Quiet check before the run: "
            f"{_quiet(env['quiet'])}. Load (1 min) before each server: "
            + ", ".join(f"{s['server']} {s['load1_before']}" for s in servers) + ".", ""]  # fmt: skip
    out += ["## Results", "", *results_table(servers), "",
            "Latencies are wrk's (client side). *server CPU %*: all of the server's processes, 100 % = one core. "
            "*other CPU %*: busy time of everything else on the machine (noise) besides wrk and the harness. "
            "*non-2xx*: wrk's count of HTTP statuses ≥ 400, with our server's own count by code in brackets. "
            "*(n c)*: most established client connections seen on that process during the point.",
            "", "![throughput](throughput.png)", "", "![latency](latency.png)", ""]  # fmt: skip
    out += ["## Ratios at 64 clients", "", *ratio_lines(r64), ""]
    if doc.get("ratios_int8", {}).get("ours_rps") is not None:
        out += ["With the int8 variant (`ours-int8`):", "", *ratio_lines(doc["ratios_int8"], "ours-int8"), ""]
    out += ["## Targets", "", "| target | goal | measured | verdict | note |", "|---|--:|--:|---|---|"]
    for t in tg:
        out.append(
            f"| {t['target']} | {t['goal']:,g} {t['unit']} | {_f(t['value'], 2)} | {t['verdict']} | {t['note']} |"
        )
    c1 = analysis.point(servers, "ours", "native-json", 1)
    if c1 and "server_side" in c1:
        ss = c1["server_side"]
        out += ["", f"Concurrency 1, native JSON: server-side p50 {_f(ss['p50_ms'], 3)} ms, p99 {_f(ss['p99_ms'], 3)} ms "
                f"over {ss['count']:.0f} requests (`histogram_quantile` estimate from the "
                f"`serving_request_duration_seconds` buckets read before and after the run); wrk client-side p50 "
                f"{c1['p50_ms']:.3f} ms, p99 {c1['p99_ms']:.3f} ms."]  # fmt: skip
    out += ["", "## Our service's memory", "",
            "Largest RSS per worker over all points: "
            + (", ".join(f"{k} {v:.0f} MB" for k, v in mem["worker_rss_mb"].items()) or "–")
            + f"; whole process tree (main process + workers) {_f(mem['total_rss_mb'], 0)} MB.", ""]  # fmt: skip
    ours = next((s for s in servers if s["server"] == "ours"), None)
    if ours and ours.get("idle_rss_mb"):
        out += [
            "Idle after start-up: " + ", ".join(f"{k} {v:.0f} MB" for k, v in ours["idle_rss_mb"].items()),
            "",
        ]
    if doc.get("ceiling"):
        out += ["## Ceilings", "", "ONNX Runtime in-process, one intra-op thread:", "",
                "| batch | median per call ms | p99 per call ms | per image µs | images/s |", "|--:|--:|--:|--:|--:|"]  # fmt: skip
        for c in doc["ceiling"]:
            out.append(f"| {c['batch']} | {c['call_median_ms']:.3f} | {c['call_p99_ms']:.3f} | "
                       f"{c['per_image_us']:.1f} | {_f(c['images_per_s'], 0)} |")  # fmt: skip
        out += ["", "The bare ASGI app (uvicorn + orjson + ONNX Runtime, 2 workers) is in the results table as "
                "`bare-asgi`.", ""]  # fmt: skip
    missing = [s for s in servers if s["status"] != "ok"]
    out += ["## Servers that could not run", ""]
    out += [f"- **{s['server']}** ({s['status']}): {s.get('reason', '')[:800]}" for s in missing] or ["None."]
    out += ["", "## Profile of our service under load", ""]
    for profile in doc.get("profiles", []):
        out += [f"### {profile.get('scenario', '')}", "", *_profile_lines(profile)]
    if not doc.get("profiles"):
        out += ["Not profiled in this run (`--no-profile` or `--quick`).", ""]
    if notes:
        out += ["## Analysis", "", notes.strip(), ""]
    out += ["", "## Servers", ""] + [f"- **{s['server']}**: {s['description']}" for s in servers]
    out += ["", f"Command: `{doc['command']}`", ""]
    return "\n".join(out)
