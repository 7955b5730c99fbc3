"""Ratios, pass/fail per target, and the Markdown summary (bench/results/latest.md)."""

from __future__ import annotations

from typing import Any


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return round(a / b, 3)


def _target(name: str, measured: str, ok: bool | None, detail: str = "") -> dict[str, Any]:
    return {"target": name, "measured": measured, "pass": ok, "detail": detail}


def evaluate(results: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ratios: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []

    kp = _get(results, "goodput", "systems", "keypool", "total")
    if kp:
        s = kp.get("served_over_oracle")
        targets.append(
            _target(
                "goodput: keypool serves >= 98% of the capacity usable by the offered load",
                f"{kp['served']}/{kp['oracle']} = {s}",
                None if s is None else s >= 0.98,
            )
        )
        targets.append(
            _target(
                "goodput: 0 avoidable client 429s (a 429 while some key had room, by the fake's counters)",
                f"{kp['avoidable_429_fixed_minute']} (fixed minutes, as the fake counts); "
                f"{kp['avoidable_429_rolling_60s']} (rolling 60 s)",
                kp["avoidable_429_fixed_minute"] == 0,
            )
        )
        worst = max(kp["upstream_429_max_per_key_minute"], kp["upstream_429_max_per_key_day"])
        targets.append(
            _target(
                "goodput: <= 1 upstream 429 per key per window",
                f"{kp['upstream_429']} upstream 429s in all; "
                f"max {kp['upstream_429_max_per_key_minute']} per key-minute, "
                f"{kp['upstream_429_max_per_key_day']} per key-day",
                worst <= 1,
            )
        )
        for name, sys_ in (_get(results, "goodput", "systems") or {}).items():
            ratios[f"goodput served/oracle {name}"] = sys_["total"].get("served_over_oracle")

    ov = _get(results, "overhead")
    if ov:
        shapes = ov.get("shapes", {})
        names = list(shapes)
        first = shapes[names[0]] if names else {}
        real_name = _get(ov, "real_shape", "name")
        real = next((v for k, v in shapes.items() if k == real_name), None)
        bare1 = first.get("litellm", {})
        kreal = (real or {}).get("keypool", {})
        direct = ov.get("direct", {})
        for c in (1, 32):
            ratios[f"cpu/request c={c}: keypool real shape / litellm N=1"] = _ratio(
                kreal.get(f"c{c}_cpu_ms_per_request"), bare1.get(f"c{c}_cpu_ms_per_request")
            )
        ratios["time to ready: keypool real shape / litellm N=1"] = _ratio(kreal.get("ready_s"), bare1.get("ready_s"))
        for shape, systems in shapes.items():
            k, b = systems.get("keypool", {}), systems.get("litellm", {})
            for c in (1, 32):
                ratios[f"{shape} cpu/request c={c} keypool/litellm"] = _ratio(
                    k.get(f"c{c}_cpu_ms_per_request"), b.get(f"c{c}_cpu_ms_per_request")
                )
                if k.get(f"c{c}_p50_ms") is not None and b.get(f"c{c}_p50_ms") is not None:
                    ratios[f"{shape} p50 c={c} keypool - litellm (ms)"] = round(
                        k[f"c{c}_p50_ms"] - b[f"c{c}_p50_ms"], 2
                    )
            ratios[f"{shape} p50 c=1 litellm / direct"] = _ratio(b.get("c1_p50_ms"), direct.get("c1_p50_ms"))
            ratios[f"{shape} time to ready keypool/litellm"] = _ratio(k.get("ready_s"), b.get("ready_s"))
        if real is not None:
            r = ratios["cpu/request c=32: keypool real shape / litellm N=1"]
            r1 = ratios["cpu/request c=1: keypool real shape / litellm N=1"]
            targets.append(
                _target(
                    "overhead: keypool CPU/request at the real pool shape <= 1.2x bare LiteLLM at N=1",
                    f"{r}x at c=32 ({kreal.get('c32_cpu_ms_per_request')} vs "
                    f"{bare1.get('c32_cpu_ms_per_request')} ms); "
                    f"{r1}x at c=1",
                    None if r is None else r <= 1.2,
                )
            )
            t = ratios["time to ready: keypool real shape / litellm N=1"]
            text = f"{t}x ({kreal.get('ready_s')} s vs {bare1.get('ready_s')} s, one start each)"
            reps = ov.get("ready_repeats") or {}
            med = {k.split(" ", 1)[0] + (" real" if "real" in k else " first"): v["median_s"] for k, v in reps.items()}
            if med.get("keypool real") and med.get("litellm first"):
                t = _ratio(med["keypool real"], med["litellm first"])
                ratios["time to ready (median of alternating starts): keypool real shape / litellm N=1"] = t
                text = (
                    f"{t}x (medians of {len(next(iter(reps.values()))['runs_s'])} alternating starts: "
                    f"{med['keypool real']} s vs {med['litellm first']} s; bare LiteLLM at the real shape "
                    f"{med.get('litellm real')} s, keypool with the slim config "
                    f"{med.get('keypool+slim-config real')} s)"
                )
            targets.append(
                _target(
                    "overhead: time to ready at the real pool shape <= 1.5x bare LiteLLM at N=1",
                    text,
                    None if t is None else t <= 1.5,
                )
            )
        diffs = {
            shape: ratios.get(f"{shape} p50 c=1 keypool - litellm (ms)")
            for shape in shapes
            if ratios.get(f"{shape} p50 c=1 keypool - litellm (ms)") is not None
        }
        if diffs:
            parts = []
            for shape, v in diffs.items():
                k = shapes[shape].get("keypool", {})
                same = shapes[shape].get("litellm-keypool-settings+tuning", {})
                text = f"{shape}: {v:+.2f} ms (paired median {k.get('c1_paired_median_diff_vs_litellm_ms')} ms"
                if same.get("c1_p50_ms") is not None and k.get("c1_p50_ms") is not None:
                    text += (
                        f"; vs keypool's settings + tuning without hooks {k['c1_p50_ms'] - same['c1_p50_ms']:+.2f} ms"
                    )
                parts.append(text + ")")
            targets.append(
                _target(
                    "overhead: keypool hooks add <= 1 ms p50 (c=1) over bare LiteLLM with the same deployments",
                    "; ".join(parts),
                    all(v <= 1.0 for v in diffs.values()),
                )
            )
        redis = ov.get("redis") or {}
        trips = {k: v["round_trips_per_admitted_request"] for k, v in redis.items() if isinstance(v, dict)}
        if trips:
            targets.append(
                _target(
                    "redis: <= 2 round trips per admitted request",
                    "; ".join(f"{k}: {v}" for k, v in trips.items()),
                    all(v is not None and v <= 2.0 for v in trips.values()),
                )
            )
    return ratios, targets


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(results: dict[str, Any], json_name: str) -> str:
    m = results.get("machine", {})
    lines = [
        f"### Benchmark results ({results.get('mode')} run, {results.get('timestamp')})",
        "",
        f"Machine: {m.get('cores')} cores, {m.get('cpu_model')}, {m.get('memory_gb')} GB; Python {m.get('python')}, "
        f"LiteLLM {m.get('litellm')}, keypool {str(m.get('git_commit'))[:10]}"
        f"{' (+uncommitted changes)' if m.get('git_dirty_paths') else ''}. Load average at start "
        f"{_fmt((m.get('load_average_at_start') or [None])[0], 2)} (a shared, noisy machine: compare ratios "
        "measured in the same run, not absolute figures across runs).",
        "",
    ]
    if results.get("code_changed_during_run"):
        lines += [
            f"**The code changed during this run** ({results['code_at_start']} -> {results['code_at_end']}): "
            "figures mix two versions; rerun.",
            "",
        ]
    if results.get("aborted"):
        lines += [f"**Run aborted: {results['aborted']}** (figures below are partial)", ""]
    gp = results.get("goodput")
    if gp:
        plan = gp["plan"]
        ph = "; ".join(
            f"{p['name']} {p['seconds']:.0f} s at "
            + ", ".join(f"{g.split('/')[0]} {r:.2f}/s" for g, r in p["rates_rps"].items())
            for p in plan["phases"]
        )
        caps = ", ".join(f"{g.split('/')[0]} {r:.2f}/s" for g, r in plan["capacity_rps"].items())
        lims = "; ".join(f"`{g}` {lim}" for g, lim in plan["groups"].items())
        lines += [
            "#### Goodput against real per-key limits",
            "",
            f"{plan['keys_per_group']} keys per group, per-key limits {lims} in the fake and in every system. "
            f"Pool capacity {caps}; open-loop load: {ph}. All systems run at once on the same arrival times, "
            "each on its own keys. The fake's day is longer than the run (keypool cannot model a shortened day), "
            "so the daily budget is spent, not renewed.",
            "",
            "| system | served / usable capacity | client 429 | avoidable 429 (fixed min / rolling 60 s) "
            "| upstream attempts | upstream 429 | max upstream 429 per key-minute / per key-day |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, s in gp["systems"].items():
            t = s["total"]
            lines.append(
                f"| {name} | {t['served']}/{t['oracle']} = {_fmt(100 * (t['served_over_oracle'] or 0))} % "
                f"| {t['client_429']} | {t['avoidable_429_fixed_minute']} / {t['avoidable_429_rolling_60s']} "
                f"| {t['upstream_attempts']} | {t['upstream_429']} "
                f"| {t['upstream_429_max_per_key_minute']} / {t['upstream_429_max_per_key_day']} |"
            )
        lines += [
            "",
            "Usable capacity = the most any router could serve from these arrival times under the fake's own "
            "windows (fixed calendar minutes + daily budget). An avoidable 429 is a client 429 answered while a key "
            "of the group still had room in every window, from the fake's log.",
            "",
        ]
        kp = gp["systems"].get("keypool", {})
        since = [x for g in kp.get("groups", {}).values() for x in g.get("avoidable_rolling_seconds_since_room", [])]
        if since:
            lines += [
                "keypool's rolling-view avoidable 429s came this long after the first key got room back "
                f"(s): {', '.join(str(x) for x in since)} (keypool counts in 1 s slots: up to 1 s late by design).",
                "",
            ]
    ov = results.get("overhead")
    if ov:
        lines += [
            "#### Overhead and scale (fake upstream answering at once, one proxy worker)",
            "",
            "| deployments | system | ready s | RSS MB | p50 / p99 ms c=1 | p50 / p99 ms c=32 | req/s c=32 "
            "| CPU ms/req c=1 / c=32 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        d = ov.get("direct") or {}
        if d:
            lines.append(_row("-", "fake upstream directly (no proxy)", d))
        for shape, systems in ov.get("shapes", {}).items():
            for name, s in systems.items():
                lines.append(_row(f"{shape}: {s['deployments']}", name, s))
        lines += [
            "",
            "`litellm` = bare LiteLLM on the same deployments (no keypool callback or auth, LiteLLM's cooldowns on); "
            "`litellm-keypool-settings` = keypool's generated router settings without keypool's callback and auth; "
            "`keypool-untuned` = keypool without its LiteLLM tuning (hooks/litellm_patches.py: no cooldown read "
            "when cooldowns are off, no cost-map usage headers, no failing OpenTelemetry import per request); "
            "`litellm-keypool-settings+tuning` = keypool's settings and the same tuning without keypool's hooks "
            "(the difference to `keypool` is the hooks alone); `keypool+slim-config` = keypool with its "
            "per-deployment data in a JSON sidecar instead of the YAML LiteLLM parses (bench/variants).",
            "",
        ]
        reps = ov.get("ready_repeats") or {}
        if reps:
            lines += [
                "Time to ready, each proxy started alone, alternating order:",
                "",
                "| proxy | deployments | runs s | median s |",
                "|---|---|---|---|",
            ]
            for name, v in reps.items():
                runs = ", ".join(str(x) for x in v["runs_s"])
                lines.append(f"| {name} | {v['deployments']} | {runs} | {_fmt(v['median_s'], 2)} |")
            lines.append("")
        redis = ov.get("redis") or {}
        rows = [(k, v) for k, v in redis.items() if isinstance(v, dict)]
        if rows:
            lines += [
                "Redis mode (keypool on a private redis-server; every command seen by MONITOR):",
                "",
                "| group, concurrency | admitted | keypool round trips per admitted request | keypool commands "
                "| LiteLLM's own commands per request | inside keypool's Lua (no round trip) | p50 ms | CPU ms/req |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for k, v in rows:
                kp = ", ".join(f"{c} {n}" for c, n in sorted(v["keypool_commands"].items()))
                other = ", ".join(f"{c} {n}" for c, n in sorted(v["litellm_commands"].items()))
                lua = ", ".join(f"{c} {n}" for c, n in sorted(v["inside_lua"].items()))
                lines.append(
                    f"| {k} | {v['admitted']} | {_fmt(v['round_trips_per_admitted_request'], 2)} | {kp} "
                    f"| {_fmt(v['litellm_round_trips_per_request'], 2)} ({other or 'none'}) | {lua} "
                    f"| {_fmt(v['p50_ms'], 2)} | {_fmt(v['cpu_ms_per_request'], 2)} |"
                )
            lines.append("")
    targets = results.get("targets") or []
    if targets:
        lines += ["#### Targets", "", "| target | measured | result |", "|---|---|---|"]
        for t in targets:
            mark = {True: "pass", False: "**FAIL**", None: "n/a"}[t["pass"]]
            lines.append(f"| {t['target']} | {t['measured']} | {mark} |")
        lines.append("")
    profiles = []
    for shape, systems in (ov or {}).get("shapes", {}).items():
        for name, s in systems.items():
            p = s.get("profile")
            if isinstance(p, dict) and "cpu_ms_by_owner" in p:
                profiles.append((shape, name, p))
    if profiles:
        lines += [
            "#### Where the CPU goes (py-spy, busy samples scaled to the measured CPU ms per request)",
            "",
            "| shape | system | CPU ms/req | self: keypool / litellm / other | named frames (inclusive ms/req) |",
            "|---|---|---|---|---|",
        ]
        for shape, name, p in profiles:
            own = p["cpu_ms_by_owner"]
            named = "; ".join(f"{k} {v}" for k, v in sorted(p["cpu_ms_watched"].items(), key=lambda kv: -kv[1]))
            lines.append(
                f"| {shape} | {name} | {_fmt(p['cpu_ms_per_request_while_sampling'], 2)} "
                f"| {_fmt(own.get('keypool', 0.0), 2)} / {_fmt(own.get('litellm', 0.0), 2)} / "
                f"{_fmt(own.get('other', 0.0), 2)} | {named} |"
            )
        lines.append("")
    startups = {k: v for k, v in ((ov or {}).get("startup_profiles") or {}).items() if "startup_shares_pct" in v}
    if startups:
        names = list(startups)
        lines += [
            f"Start-up ({_get(ov, 'real_shape', 'name')}): py-spy from process start to /health/liveliness 200; "
            "inclusive share of busy samples (seconds = share x time to ready under py-spy):",
            "",
            "| part | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        labels = list(next(iter(startups.values()))["startup_shares_pct"])
        for label in labels:
            cells = []
            for n in names:
                pct = startups[n]["startup_shares_pct"][label]
                secs = pct / 100 * (startups[n].get("ready_s_under_py_spy") or 0)
                cells.append(f"{pct} % ({secs:.1f} s)")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append(
            "| time to ready under py-spy | "
            + " | ".join(f"{_fmt(startups[n].get('ready_s_under_py_spy'))} s" for n in names)
            + " |"
        )
        lines.append("")
    lines += [
        "Rerun: `.venv/bin/python -m bench.run` (about 30 minutes on 2 cores; `--quick` for a smoke check under "
        "3 minutes, `--only goodput|overhead`, `--keep` to keep configs, logs and py-spy raw stacks). "
        f"Every figure, ratio and pass/fail: `bench/results/{json_name}`.",
        "",
    ]
    return "\n".join(lines)


def _row(deployments: str, name: str, s: dict[str, Any]) -> str:
    return (
        f"| {deployments} | {name} | {_fmt(s.get('ready_s'))} | {_fmt(s.get('rss_mb'), 0)} "
        f"| {_fmt(s.get('c1_p50_ms'))} / {_fmt(s.get('c1_p99_ms'))} | {_fmt(s.get('c32_p50_ms'))} / "
        f"{_fmt(s.get('c32_p99_ms'))} | {_fmt(s.get('c32_rps'))} "
        f"| {_fmt(s.get('c1_cpu_ms_per_request'), 2)} / {_fmt(s.get('c32_cpu_ms_per_request'), 2)} |"
    )
