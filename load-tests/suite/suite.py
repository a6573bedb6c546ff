#!/usr/bin/env python3
"""The load-test suite: each scenario runs with one command against `twinload mock-adt` on
loopback and writes <out>/<scenario>.md, <scenario>.json and the run report's HTML charts.

    load-tests/suite/suite.py <scenario|all> [--size tiny|full] [--scale K] [--out DIR] [--results FILE]

Scenarios: fleet-10k, hubs, loaders-1, loaders-2, loaders-4, loaders-8, faults, capacity, peers,
fleet-100k. `all` runs them in that order and writes load-tests/RESULTS.md (or --results) after
each one, listing those not run yet, so a run cut short still leaves what it measured.

--scale K multiplies every rate limit of the profile (adt-2025 by default, --profile) by K, for
the mock and the loaders alike, keeping their ratios: an hour at real limits runs in minutes.
Results state K. --size tiny runs every scenario in seconds (the test suite does, so the
scripts cannot rot).

Figures per run: makespan (wall time of the whole load), makespan / T* (T* from `twinload plan`
at the scaled limits), 429 share (the mock's count of 429s over its requests), items lost
(planned twins and relationships the mock does not hold at the end).

Depends only on the CLI (`gen`, `plan`, `load`, `report`, `mock-adt`) and the summary's keys
(`items`, `requests_by_status`, `throttled_share`, `t_star_s`, `makespan_ratio`, `elapsed_s`).
The binary is $TWINLOAD_BIN (default: target/release/twinload, built when missing); the Python
for the peers is $TWINLOAD_PYTHON (a venv with azure-digitaltwins-core and aiohttp).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# `all` runs them in this order: the longest last, so a time limit cuts the fewest.
SCENARIOS = ["fleet-10k", "hubs", "loaders-1", "loaders-2", "loaders-4", "loaders-8", "faults", "capacity", "peers",
             "fleet-100k"]
# Bounds every wait of the suite (a mock starting, a load finishing).
LOAD_TIMEOUT_S = 4 * 3600


def binary():
    b = os.environ.get("TWINLOAD_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    b = os.path.join(target, "release", "twinload")
    if not os.path.exists(b):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return b


def scaled_limits(out, profile, k):
    """A limits file with every *_per_s of `profile` times k (per-twin rate included)."""
    text = open(os.path.join(ROOT, "config", "limits.toml")).read()
    section = re.search(r"\[profiles\.%s\]\n(.*?)(?=\n\[|\Z)" % re.escape(profile), text, re.S).group(1)
    lines = ["default_profile = \"scaled\"", "", "[profiles.scaled]"]
    for line in section.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        key, value = [x.strip() for x in line.split("=", 1)]
        if key.endswith("_per_s"):
            value = str(max(1, round(float(value) * k)))
        lines.append(f"{key} = {value}")
    path = os.path.join(out, f"limits-{profile}-x{k:g}.toml")
    open(path, "w").write("\n".join(lines) + "\n")
    return path


class Mock:
    """`twinload mock-adt` on a free loopback port; stopped by its pid."""

    def __init__(self, out, name, flags):
        self.stdout = open(os.path.join(out, f"{name}-mock.stdout"), "w+")
        self.proc = subprocess.Popen([binary(), "mock-adt", "--listen", "127.0.0.1:0"] + flags,
                                     stdout=self.stdout, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        self.url = None
        while time.time() < deadline and not self.url:
            self.stdout.seek(0)
            m = re.search(r"listening on (\S+)", self.stdout.read())
            self.url = m.group(1) if m else None
            time.sleep(0.1)
        if not self.url:
            self.stop()
            raise SystemExit(f"the mock did not start (see {self.stdout.name})")

    def stats(self):
        ctx = None
        if self.url.startswith("https"):
            import ssl
            ctx = ssl._create_unverified_context()  # loopback, our own self-signed mock
        with urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=30, context=ctx) as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def gen(out, twins, seed=1, hubs=0, hub_degree=0, prefix=""):
    path = os.path.join(out, f"fleet-{twins}-{seed}-{hubs}x{hub_degree}{('-' + prefix) if prefix else ''}.ndjson")
    if not os.path.exists(path):
        cmd = [binary(), "gen", "--twins", str(twins), "--seed", str(seed), "--out", path]
        if hubs:
            cmd += ["--hubs", str(hubs), "--hub-degree", str(hub_degree)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        if prefix:
            prefix_ids(path, prefix)
    return path


def prefix_ids(path, prefix):
    """Gives a fleet's twins and relationships ids of their own (several loaders, one instance)."""
    lines = []
    for line in open(path):
        if '"$dtId"' in line:
            item = json.loads(line)
            for key in ("$dtId", "$targetId", "$relationshipId"):
                if key in item:
                    item[key] = prefix + item[key]
            line = json.dumps(item, separators=(",", ":")) + "\n"
        lines.append(line)
    open(path, "w").writelines(lines)


def planned(fleet, limits):
    """(twins + relationships to write, T* in seconds) from `twinload plan`."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([binary(), "plan", "--input", fleet, "--limits", limits, "--json", f.name], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        doc = json.load(open(f.name))
    c = doc["counts"]
    return c["twins"]["to_write"] + c["relationships"]["to_write"], doc["makespan"]["t_star_s"]


def load(out, name, url, fleet, limits, extra=(), env=None):
    """Runs `twinload load`; returns (summary, wall seconds)."""
    summary = os.path.join(out, f"{name}.summary.json")
    cmd = [binary(), "load", "--endpoint", url, "--input", fleet, "--limits", limits, "--summary", summary,
           "--dead-letter", os.path.join(out, f"{name}.dead.ndjson")] + list(extra)
    started = time.time()
    with open(os.path.join(out, f"{name}.stderr"), "w") as err:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, timeout=LOAD_TIMEOUT_S,
                       env={**os.environ, **(env or {})})
    return json.load(open(summary)), time.time() - started


def report(out, name):
    page = os.path.join(out, f"{name}.html")
    subprocess.run([binary(), "report", os.path.join(out, f"{name}.summary.json"), "--out", page], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.basename(page)


def figures(tool, makespan, t_star, stats, planned_items, before=None):
    """One result row, from the mock's stats (the same for every tool)."""
    before = before or {"requests_total": 0, "throttled_total": 0}
    requests = stats["requests_total"] - before["requests_total"]
    throttled = stats["throttled_total"] - before["throttled_total"]
    held = stats["twins"] + stats["relationships"]
    return {"tool": tool, "makespan_s": round(makespan, 2), "t_star_s": round(t_star, 2),
            "makespan_over_t_star": round(makespan / t_star, 3) if t_star > 0 else None,
            "requests": requests, "share_429": round(throttled / requests, 4) if requests else 0.0,
            "items_planned": planned_items, "items_lost": max(0, planned_items - held)}


SIZES = {
    # scenario: (tiny, full)
    "fleet-10k": (150, 10_000),
    "fleet-100k": (200, 100_000),
    "hubs": ((60, 2, 100), (2_000, 4, 5_000)),
    "loaders": (60, 5_000),
    "faults": (150, 10_000),
    "capacity": (300, 20_000),
    "peers": (60, 2_000),
}


def size_of(args, key):
    tiny, full = SIZES[key]
    return tiny if args.size == "tiny" else full


def run_fleet(args, out, limits, name, twins, hubs=0, hub_degree=0, mock_flags=(), load_flags=()):
    fleet = gen(out, twins, hubs=hubs, hub_degree=hub_degree)
    items, t_star = planned(fleet, limits)
    mock = Mock(out, name, ["--no-auth", "--limits", limits] + list(mock_flags))
    try:
        summary, wall = load(out, name, mock.url, fleet, limits, load_flags)
        row = figures("twinload", wall, t_star, mock.stats(), items)
        row["loader_makespan_ratio"] = summary.get("makespan_ratio")
        row["loader_throttled_share"] = summary.get("throttled_share")
    finally:
        mock.stop()
    return {"rows": [row], "charts": [report(out, name)], "fleet": {"twins": twins, "hubs": hubs, "hub_degree": hub_degree}}


def scenario_loaders(args, out, limits, n):
    twins = size_of(args, "loaders")
    name = f"loaders-{n}"
    fleets = [gen(out, twins, seed=i + 1, prefix=f"l{i}-") for i in range(n)]
    plans = [planned(f, limits) for f in fleets]
    items = sum(p[0] for p in plans)
    # One instance: its create/delete rate bounds all loaders together, while each fleet's own
    # bound (its busiest twin) holds in parallel: T* is the larger of the two.
    rate = float(re.search(r"create_delete_per_s = (\S+)", open(limits).read()).group(1))
    t_star = max(max(p[1] for p in plans), items / rate)
    mock = Mock(out, name, ["--no-auth", "--limits", limits])
    try:
        started = time.time()
        procs = []
        for i, fleet in enumerate(fleets):
            summary = os.path.join(out, f"{name}-{i}.summary.json")
            err = open(os.path.join(out, f"{name}-{i}.stderr"), "w")
            procs.append(subprocess.Popen(
                [binary(), "load", "--endpoint", mock.url, "--input", fleet, "--limits", limits, "--summary", summary,
                 "--dead-letter", os.path.join(out, f"{name}-{i}.dead.ndjson")],
                stdout=subprocess.DEVNULL, stderr=err))
        for p in procs:
            p.wait(timeout=LOAD_TIMEOUT_S)
        wall = time.time() - started
        row = figures(f"twinload x{n}", wall, t_star, mock.stats(), items)
    finally:
        mock.stop()
    return {"rows": [row], "charts": [report(out, f"{name}-{i}") for i in range(n)], "fleet": {"twins_per_loader": twins}}


def scenario_capacity(args, out):
    """Limits off: the loader's requests/s with the metrics listener off and on, and wrk's ping."""
    twins = size_of(args, "capacity")
    fleet = gen(out, twins)
    unlimited = os.path.join(ROOT, "load-tests", "loader", "limits-unlimited.toml")
    items = planned(fleet, unlimited)[0]
    rows = []
    for label, extra in (("metrics off", []), ("metrics on", ["--metrics-listen", "127.0.0.1:0"])):
        mock = Mock(out, f"capacity-{label.replace(' ', '-')}", ["--no-auth", "--limits-off"])
        try:
            name = f"capacity-{label.replace(' ', '-')}"
            summary, wall = load(out, name, mock.url, fleet, unlimited, ["--writers", "64"] + extra)
            stats = mock.stats()
            rows.append({"tool": f"twinload, {label}", "makespan_s": round(wall, 2),
                         "requests": summary["requests_total"],
                         "requests_per_s": round(summary["requests_total"] / summary["write_elapsed_s"], 0),
                         "items_lost": max(0, items - stats["twins"] - stats["relationships"])})
        finally:
            mock.stop()
    ratio = rows[1]["requests_per_s"] / rows[0]["requests_per_s"] if rows[0]["requests_per_s"] else None
    result = {"rows": rows, "charts": [], "metrics_on_over_off": round(ratio, 3) if ratio else None,
              "fleet": {"twins": twins}}
    if shutil.which("wrk"):
        mock = Mock(out, "capacity-wrk", ["--no-auth", "--limits-off"])
        try:
            dur = "2s" if args.size == "tiny" else "10s"
            w = subprocess.run(["wrk", "-t1", "-c64", "-d" + dur, "-s", os.path.join(ROOT, "load-tests", "wrk", "ping.lua"),
                                f"{mock.url}/_mock/ping"], capture_output=True, text=True, timeout=120)
            m = re.search(r"Requests/sec:\s+([\d.]+)", w.stdout)
            result["wrk_ping_per_s"] = float(m.group(1)) if m else None
        finally:
            mock.stop()
    else:
        result["wrk_ping_per_s"] = None
        result["note"] = "wrk is not installed: its column is empty"
    return result


def scenario_peers(args, out, limits):
    """twinload and the two peers, one after the other, each on a fresh mock (same limits, same
    data, HTTPS with a self-signed CA as the SDK requires)."""
    twins = size_of(args, "peers")
    fleet = gen(out, twins)
    items, t_star = planned(fleet, limits)
    python = os.environ.get("TWINLOAD_PYTHON", sys.executable)
    rows, charts = [], []
    runs = [
        ("twinload", None),
        ("Python SDK (azure-digitaltwins-core, asyncio)", os.path.join(ROOT, "load-tests", "peers", "sdk_loader.py")),
        ("ADT Explorer import approach", os.path.join(ROOT, "load-tests", "peers", "explorer_import.py")),
    ]
    for tool, script in runs:
        key = re.sub(r"[^a-z]+", "-", tool.lower()).strip("-")[:24]
        ca = os.path.join(out, f"peers-{key}-ca.pem")
        mock = Mock(out, f"peers-{key}", ["--tls-self-signed", "--ca-out", ca, "--limits", limits])
        url = mock.url.replace("127.0.0.1", "localhost")
        try:
            started = time.time()
            if script is None:
                name = "peers-twinload"
                load(out, name, url, fleet, limits, ["--ca-cert", ca], env={"TWINLOAD_TOKEN": "suite"})
                charts.append(report(out, name))
            else:
                with open(os.path.join(out, f"peers-{key}.stderr"), "w") as err:
                    subprocess.run([python, script, url, fleet], stdout=err, stderr=err, timeout=LOAD_TIMEOUT_S,
                                   env={**os.environ, "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca})
            rows.append(figures(tool, time.time() - started, t_star, mock.stats(), items))
        finally:
            mock.stop()
    return {"rows": rows, "charts": charts, "fleet": {"twins": twins}}


def run(args, scenario, out):
    limits = scaled_limits(out, args.profile, args.scale)
    if scenario == "fleet-10k":
        r = run_fleet(args, out, limits, scenario, size_of(args, "fleet-10k"))
    elif scenario == "fleet-100k":
        r = run_fleet(args, out, limits, scenario, size_of(args, "fleet-100k"))
    elif scenario == "hubs":
        twins, hubs, degree = size_of(args, "hubs")
        r = run_fleet(args, out, limits, scenario, twins, hubs=hubs, hub_degree=degree)
    elif scenario.startswith("loaders-"):
        r = scenario_loaders(args, out, limits, int(scenario.split("-")[1]))
    elif scenario == "faults":
        r = run_fleet(args, out, limits, scenario, size_of(args, "faults"), mock_flags=[
            "--fault-429-rate", "0.10", "--fault-5xx-rate", "0.02", "--drop-rate", "0.01", "--latency-spike-ms",
            "500", "--latency-spike-rate", "0.01", "--new-twin-invisible-ms", "2000", "--query-lag-ms", "2000",
            "--seed", "1"])
    elif scenario == "capacity":
        r = scenario_capacity(args, out)
    elif scenario == "peers":
        r = scenario_peers(args, out, limits)
    else:
        raise SystemExit(f"unknown scenario {scenario}; one of {', '.join(SCENARIOS)} or all")
    r.update({"scenario": scenario, "size": args.size, "scale": args.scale, "profile": args.profile,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    json.dump(r, open(os.path.join(out, f"{scenario}.json"), "w"), indent=2)
    open(os.path.join(out, f"{scenario}.md"), "w").write(markdown(r))
    print(markdown(r))
    return r


def markdown(r):
    cols = sorted({k for row in r["rows"] for k in row}, key=lambda k: list(r["rows"][0]).index(k)
                  if k in r["rows"][0] else 99)
    lines = [f"### {r['scenario']}", "",
             f"Size {r['size']} ({json.dumps(r.get('fleet', {}))}), limits {r['profile']} x {r['scale']:g} (k = {r['scale']:g}).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in r["rows"]:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    for key in ("metrics_on_over_off", "wrk_ping_per_s", "note"):
        if key in r:
            lines.append(f"\n{key}: {r[key]}")
    if r.get("charts"):
        lines.append("\nCharts: " + ", ".join(r["charts"]))
    return "\n".join(lines) + "\n"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, load average {os.getloadavg()[0]:.1f} at the end"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario")
    p.add_argument("--size", choices=["tiny", "full"], default="full")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--profile", default="adt-2025")
    p.add_argument("--out", default=None)
    p.add_argument("--results", default=None, help="with `all`: the RESULTS.md to write")
    args = p.parse_args()
    out = args.out or os.path.join(tempfile.gettempdir(), f"twinload-suite-{args.size}")
    os.makedirs(out, exist_ok=True)
    names = SCENARIOS if args.scenario == "all" else [args.scenario]
    results = []
    for name in names:
        results.append(run(args, name, out))
        if args.scenario == "all":
            write_results(args, out, results, names[len(results):])


def write_results(args, out, results, pending):
    path = args.results or os.path.join(ROOT, "load-tests", "RESULTS.md")
    cmd = " ".join(["load-tests/suite/suite.py"] + sys.argv[1:])
    text = ["# Load-test results", "", "Written by `load-tests/suite/suite.py all` (do not edit by hand).", "",
            f"- Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
            f"- Machine: {machine()} (a busy machine makes times a ceiling).",
            f"- Binary: {binary()}",
            f"- Command: `{cmd}`", f"- Size: {args.size}; limits {args.profile} x k, k = {args.scale:g}",
            f"- Output (JSON, Markdown, report pages): {out}",
            f"- Not run (yet): {', '.join(pending) if pending else 'none'}", ""]
    text += [markdown(r) for r in results]
    open(path, "w").write("\n".join(text))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
