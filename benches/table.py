#!/usr/bin/env python3
"""The README's performance table from ONE run: criterion medians beside
callgrind instruction counts, the bare call and the peers beside each case,
and each case's DESIGN.md target marked met or short.

    python3 benches/table.py             # run the benches, then write the table
    python3 benches/table.py --no-run    # only rebuild the table from the last run

A run (about 6 minutes on 2 vCPU) notes the date and `uptime` before and
after, runs (in this order) the criterion benches `overhead`, `tower_layer` and
`breaker`, the allocation and memory benches (their Markdown tables are saved
to `benches/results/`), then the gungraun benches `instructions` (needs
valgrind and `cargo install gungraun-runner --version 0.20.0`; without the
runner the table says "not run" in the instruction columns). Then it writes
`benches/results/table.md`, replaces the block between the markers
`<!-- perf-table:begin -->` and `<!-- perf-table:end -->` in README.md, and
redraws the chart (`chart.py`).

Instructions per call = (Ir(2N) - Ir(N)) / N, from gungraun's `summary.json`
of the two sizes of each case. Time is criterion's median of one run.
Only the Python standard library is used.
"""

import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BEGIN, END = "<!-- perf-table:begin -->", "<!-- perf-table:end -->"


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def sh(cmd, env=None, capture=False):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    full = dict(os.environ, **(env or {}))
    if capture:
        return subprocess.run(cmd, cwd=ROOT, env=full, check=True, text=True,
                              stdout=subprocess.PIPE).stdout
    subprocess.run(cmd, cwd=ROOT, env=full, check=True)
    return None


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def markdown_table(text):
    """The Markdown table lines of a bench's standard output."""
    return "\n".join(l for l in text.splitlines() if l.startswith("|")) + "\n"


def run(have_runner):
    meta = {"start": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": uptime()}
    bench = ["cargo", "bench", "-p", "safecall-bench"]
    sh(bench + ["--bench", "overhead", "--bench", "tower_layer", "--bench", "breaker"])
    out = sh(bench + ["--bench", "allocations"], capture=True)
    with open(os.path.join(RESULTS, "allocations.md"), "w") as f:
        f.write(markdown_table(out))
    out = sh(bench + ["--bench", "registry_memory"], capture=True)
    with open(os.path.join(RESULTS, "memory_run.md"), "w") as f:
        f.write(markdown_table(out))
    meta["load_after_timing"] = uptime()
    if have_runner:
        sh(bench + ["--bench", "instructions"], env={"GUNGRAUN_SAVE_SUMMARY": "json"})
    meta["end"] = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC")
    meta["load_after"] = uptime()
    meta["rustc"] = sh(["rustc", "--version"], capture=True).strip()
    meta["instructions"] = have_runner
    with open(os.path.join(RESULTS, "table_run.json"), "w") as f:
        json.dump(meta, f, indent=1)


def criterion_medians():
    """{"group/function": median ns}."""
    out = {}
    root = os.path.join(target_dir(), "criterion")
    for est in glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True):
        meta_path = os.path.join(os.path.dirname(est), "benchmark.json")
        if not os.path.exists(meta_path):
            continue
        with open(meta_path) as f:
            meta = json.load(f)
        with open(est) as f:
            median = json.load(f)["median"]["point_estimate"]
        func = meta.get("function_id") or meta.get("value_str") or ""
        out[f"{meta.get('group_id')}/{func}"] = median
    return out


def find_ir(node):
    """The first callgrind `Ir` total of a gungraun summary (new run)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ir":
                # {"metrics": {"Left": n}} / {"Both": [new, old]} / a number
                if isinstance(v, (int, float)):
                    return v
                got = find_number(v)
                if got is not None:
                    return got
            got = find_ir(v)
            if got is not None:
                return got
    elif isinstance(node, list):
        for v in node:
            got = find_ir(v)
            if got is not None:
                return got
    return None


def find_number(node):
    """The new value of a gungraun metric: the first number, depth first."""
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return node
    if isinstance(node, dict):
        for key in ("metrics", "Left", "Both", "Int", "Float"):
            if key in node:
                got = find_number(node[key])
                if got is not None:
                    return got
        for v in node.values():
            got = find_number(v)
            if got is not None:
                return got
    if isinstance(node, list):
        for v in node:
            got = find_number(v)
            if got is not None:
                return got
    return None


def instruction_counts():
    """{"group/function": instructions per call} from gungraun's summaries."""
    sizes = {}
    root = os.path.join(target_dir(), "gungraun")
    for path in glob.glob(os.path.join(root, "**", "summary.json"), recursive=True):
        with open(path) as f:
            s = json.load(f)
        group = s.get("group", "")
        func = s.get("function_name", "")
        bench_id = s.get("id")
        if not group.endswith("_group") or bench_id not in ("n", "n2"):
            continue
        g = group[: -len("_group")]
        case = f"{g}/{func[len(g) + 1:]}"
        ir = find_ir(s)
        if ir is not None:
            sizes.setdefault(case, {})[bench_id] = ir
    # N as in benches/instructions.rs
    n = 1000
    return {case: (v["n2"] - v["n"]) / n for case, v in sizes.items() if "n" in v and "n2" in v}


def ns(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.1f} ns"


def ir(v):
    return "–" if v is None else f"{v:,.0f} Ir"


# The rows: (caption, criterion case of safecall, [(label, safecall variant case)],
# [(peer label, case)], target rule). Cases are `group/function`.
ROWS = [
    ("retry only, success", "success_retry/safecall",
     [("no budget", "success_retry/safecall_no_budget")],
     [("tower retry", "success_retry/tower_retry"), ("tokio-retry2", "success_retry/tokio_retry2"),
      ("backon", "success_retry/backon"), ("seatbelt", "success_retry/seatbelt")],
     ("≤ tower retry", "success_retry/tower_retry", 1.0)),
    ("retry + breaker, success", "success_breaker/safecall_default",
     [("5 in a row", "success_breaker/safecall_consecutive"),
      ("count window", "success_breaker/safecall_count")],
     [("recloser", "success_breaker/recloser"), ("failsafe", "success_breaker/failsafe"),
      ("seatbelt", "success_breaker/seatbelt"), ("tower-resilience", "success_breaker/tower_resilience")],
     ("≤ ½ recloser", "success_breaker/recloser", 0.5)),
    ("open-breaker rejection", "open_rejection/safecall_default",
     [("5 in a row", "open_rejection/safecall_consecutive"),
      ("count window", "open_rejection/safecall_count")],
     [("recloser", "open_rejection/recloser"), ("failsafe", "open_rejection/failsafe"),
      ("seatbelt", "open_rejection/seatbelt"), ("tower-resilience", "open_rejection/tower_resilience")],
     ("≤ ½ recloser", "open_rejection/recloser", 0.5)),
    ("3 attempts, zero delay", "three_attempts_zero_delay/safecall", [],
     [("tower retry", "three_attempts_zero_delay/tower_retry"),
      ("seatbelt", "three_attempts_zero_delay/seatbelt"),
      ("backon", "three_attempts_zero_delay/backon"),
      ("tokio-retry2", "three_attempts_zero_delay/tokio_retry2")],
     ("≤ tower retry", "three_attempts_zero_delay/tower_retry", 1.0)),
    ("registry of 10,000 keys: lookup", "success_registry_10k/safecall_lookup_only",
     [("borrowing `with`", "success_registry_10k/safecall_with_lookup_only")],
     [("bare `RwLock<HashMap>` lookup", "success_registry_10k/rwlock_map_lookup_only"),
      ("bare `HashMap` lookup, no lock", "success_registry_10k/map_lookup_only"),
      ("DashMap lookup + clone", "success_registry_10k/dashmap_lookup_only")],
     ("≤ 1.5× bare `RwLock<HashMap>` lookup", "success_registry_10k/rwlock_map_lookup_only", 1.5)),
    ("registry of 10,000 keys: lookup + call", "success_registry_10k/safecall", [],
     [("recloser (DashMap + tower retry)", "success_registry_10k/recloser"),
      ("failsafe (DashMap + tower retry)", "success_registry_10k/failsafe")],
     None),
    ("registry of 1,000,000 keys: lookup", "success_registry_1m/safecall_lookup_only",
     [("borrowing `with`", "success_registry_1m/safecall_with_lookup_only")],
     [("bare `RwLock<HashMap>` lookup", "success_registry_1m/rwlock_map_lookup_only"),
      ("bare `HashMap` lookup, no lock", "success_registry_1m/map_lookup_only"),
      ("DashMap lookup + clone", "success_registry_1m/dashmap_lookup_only")],
     ("≤ 1.5× bare `RwLock<HashMap>` lookup", "success_registry_1m/rwlock_map_lookup_only", 1.5)),
    ("registry of 1,000,000 keys: lookup + call", "success_registry_1m/safecall", [],
     [("recloser", "success_registry_1m/recloser"), ("failsafe", "success_registry_1m/failsafe")],
     None),
    ("tower layer, success", "tower_stack_success/safecall_layer",
     [("no budget", "tower_stack_success/safecall_layer_no_budget"),
      ("breaker per key", "tower_stack_success/safecall_layer_breaker")],
     [("the service alone", "tower_stack_success/bare_service"),
      ("tower retry", "tower_stack_success/tower_retry"),
      ("tower retry + tower-resilience", "tower_stack_success/tower_resilience")],
     None),
    ("2 threads, one breaker, per call", "two_threads_one_breaker/safecall_default",
     [("5 in a row", "two_threads_one_breaker/safecall_consecutive"),
      ("count window", "two_threads_one_breaker/safecall_count")],
     [("recloser", "two_threads_one_breaker/recloser"), ("failsafe", "two_threads_one_breaker/failsafe")],
     ("≤ 100 ns", None, 100.0)),
]


def cell(case, t, i):
    return f"{ns(t.get(case))} · {ir(i.get(case))}"


def status(rule, case, t, i):
    if rule is None:
        return ""
    text, ref, factor = rule
    out = []
    for name, data, absolute in (("time", t, True), ("Ir", i, False)):
        v = data.get(case)
        if ref is None:
            if not absolute:
                continue
            bound = factor
        else:
            r = data.get(ref)
            bound = None if r is None else r * factor
        if v is None or bound is None:
            continue
        mark = "met" if v <= bound else f"short ({v / bound:.1f}× the bound)"
        out.append(f"{name}: {mark}")
    return f"{text}: " + ("; ".join(out) if out else "not measured")


def table(t, i, meta):
    bare_t, bare_i = t.get("success_retry/bare_call"), i.get("success_retry/bare_call")
    lines = [
        "| case | safecall | peers (same run) | DESIGN target |",
        "| --- | --- | --- | --- |",
        f"| bare call (the floor) | {ns(bare_t)} · {ir(bare_i)} | | |",
    ]
    for caption, main, variants, peers, rule in ROWS:
        if main not in t and main not in i:
            continue
        first = f"**{cell(main, t, i)}**"
        if variants:
            first += " (" + "; ".join(f"{lab}: {cell(c, t, i)}" for lab, c in variants) + ")"
        peer = "; ".join(f"{lab} {cell(c, t, i)}" for lab, c in peers)
        lines.append(f"| {caption} | {first} | {peer} | {status(rule, main, t, i)} |")
    lines += extra_rows()
    lines.append("")
    lines.append("Each cell: criterion's median time per call · callgrind instructions per call "
                 "(`–`: not counted; the 1,000,000-key and two-thread cases are counted in "
                 "time only, as their cost is cache misses and contention, which instruction "
                 "counts do not see).")
    return "\n".join(lines) + "\n"


def md_rows(name):
    """The body rows of a Markdown table in `benches/results/<name>`, as cell lists."""
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return []
    rows = []
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set("-: ") and cells[0] not in ("path", "scenario (1,000,000 keys)"):
            rows.append(cells)
    return rows


def extra_rows():
    """Allocations and memory, from the same run's `allocations.md` and `memory_run.md`."""
    out = []
    alloc = md_rows("allocations.md")
    if alloc:
        ours = {r[0]: r[2] for r in alloc if r[1] in ("safecall retry", "safecall retry + breaker") and
                (r[0] == "success" and r[1] == "safecall retry" or r[0] == "rejection")}
        others = [f"{r[1]} {float(r[2]):g} ({r[0]})" for r in alloc
                  if not r[1].startswith("safecall") and float(r[2]) > 0]
        out.append(f"| heap allocations per call (success, rejection) | "
                   f"{float(ours.get('success', 'nan')):g}, {float(ours.get('rejection', 'nan')):g} | "
                   f"{'; '.join(others) or 'none'}; the others 0 | 0: "
                   f"{'met' if all(float(v) == 0 for v in ours.values()) else 'short'} |")
    mem = md_rows("memory_run.md")
    if mem:
        pick = {r[0]: r for r in mem}
        ours = pick.get("safecall registry, get only (never called)")
        idle = pick.get("safecall registry, default config, 1 success per key, idle 34 s + housekeeping")
        peers = [f"{r[0].split(' in ')[0]} {r[1]} B" for k, r in pick.items()
                 if k.startswith(("recloser", "failsafe"))]
        if ours:
            extra = f" (default config after a call, idle + housekeeping: live heap {idle[2]} B)" if idle else ""
            out.append(f"| memory per idle tenant (1,000,000 keys, RSS per key) | {ours[1]} B{extra} | "
                       f"{'; '.join(peers)} (1 success per key) | ≤ 160 B: "
                       f"{'met' if float(ours[1]) <= 160 else 'short'} |")
    return out


def header(meta):
    if not meta:
        return "From the last run's outputs (no run record in `benches/results/table_run.json`).\n"
    ir_note = "" if meta.get("instructions") else " Instruction counts not run (no `gungraun-runner`)."
    return (f"One run of `python3 benches/table.py`, {meta['start']} → {meta['end']}; "
            f"load average (1, 5, 15 min) {meta['load_before']} before, "
            f"{meta.get('load_after_timing', '?')} after the timed benches, {meta['load_after']} at the end "
            f"(2 vCPU shared with other builds: compare within a row). {meta.get('rustc', '')}, "
            f"tokio without `test-util`, current-thread runtime with `enable_all`.{ir_note}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-run", action="store_true", help="only rebuild the table from the last run")
    args = ap.parse_args()
    if not args.no_run:
        have_runner = subprocess.run(["sh", "-c", "command -v gungraun-runner"],
                                     stdout=subprocess.DEVNULL).returncode == 0
        run(have_runner)
    meta_path = os.path.join(RESULTS, "table_run.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else None
    t = criterion_medians()
    # Counts of an earlier run must not sit beside this run's times.
    i = instruction_counts() if (meta is None or meta.get("instructions")) else {}
    text = header(meta) + "\n" + table(t, i, meta)
    with open(os.path.join(RESULTS, "table.md"), "w") as f:
        f.write(text)
    readme = os.path.join(ROOT, "README.md")
    body = open(readme).read()
    if BEGIN in body and END in body:
        pre, rest = body.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        with open(readme, "w") as f:
            f.write(pre + BEGIN + "\n" + text + END + post)
    sh([sys.executable, os.path.join(HERE, "chart.py"), "--criterion",
        os.path.join(target_dir(), "criterion"), "--out", RESULTS])
    print(text)


if __name__ == "__main__":
    main()
