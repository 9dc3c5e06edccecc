#!/usr/bin/env python3
"""Turn criterion's output into the README's results: a Markdown table and an SVG chart.

Reads every `target/criterion/**/new/estimates.json` (median point estimates,
nanoseconds per call) with its `benchmark.json` (group and function names), and
writes `benches/results/overhead.md` and `benches/results/overhead.svg`.

Usage (from the workspace root, after `cargo bench -p safecall-bench`):
    python3 benches/chart.py [--criterion target/criterion] [--out benches/results]
Only the Python standard library is used.
"""

import argparse
import glob
import html
import json
import math
import os

# The order of the groups in the table and the chart, with their captions.
GROUPS = [
    ("success_retry", "Retry only, success"),
    ("success_breaker", "Retry + breaker, success"),
    ("success_registry_10k", "Retry + breaker of a random key among 10,000"),
    ("success_registry_1m", "Retry + breaker of a random key among 1,000,000"),
    ("open_rejection", "Open breaker: rejection"),
    ("three_attempts_zero_delay", "3 attempts, zero delay (fails twice)"),
    ("breaker_alone", "Breaker alone (sync API), closed success"),
    ("two_threads_one_breaker", "2 threads, one breaker, per call"),
    ("two_threads_one_registry", "2 threads, one registry (1,000 keys), per call"),
]
BARE = ("success_retry", "bare_call")


def load(root):
    """{group: {function: median ns}} from criterion's directory."""
    out = {}
    for est in glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True):
        meta_path = os.path.join(os.path.dirname(est), "benchmark.json")
        if not os.path.exists(meta_path):
            continue
        with open(meta_path) as f:
            meta = json.load(f)
        with open(est) as f:
            median = json.load(f)["median"]["point_estimate"]
        group = meta.get("group_id")
        func = meta.get("function_id") or meta.get("value_str") or ""
        out.setdefault(group, {})[func] = median
    return out


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def table(data):
    bare = data.get(BARE[0], {}).get(BARE[1])
    lines = []
    for group, caption in GROUPS:
        rows = data.get(group)
        if not rows:
            continue
        lines.append(f"**{caption}** (`{group}`)\n")
        lines.append("| case | median per call | × bare call |")
        lines.append("| --- | ---: | ---: |")
        for func, ns in sorted(rows.items(), key=lambda kv: kv[1]):
            ratio = f"{ns / bare:.1f}×" if bare else "–"
            lines.append(f"| {func} | {fmt_ns(ns)} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def svg(data):
    """Horizontal bars, one block per group, log-scaled x axis (ns per call)."""
    bar_h, gap, label_w, plot_w, left_pad = 16, 4, 260, 560, 10
    rows = []
    for group, caption in GROUPS:
        funcs = data.get(group)
        if not funcs:
            continue
        rows.append(("caption", caption, None))
        for func, ns in sorted(funcs.items(), key=lambda kv: kv[1]):
            rows.append(("bar", func, ns))
    values = [r[2] for r in rows if r[0] == "bar"]
    if not values:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    span = math.log10(hi) - math.log10(lo)

    def x(ns):
        return label_w + plot_w * (math.log10(max(ns, lo)) - math.log10(lo)) / span

    top = 40
    height = top + sum((bar_h + 10) if r[0] == "caption" else (bar_h + gap) for r in rows) + 40
    width = label_w + plot_w + 120
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        "font-family='sans-serif' font-size='12'>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='{left_pad}' y='20' font-size='15' font-weight='bold'>"
        "safecall vs Rust peers: median time per call (log scale, lower is better)</text>",
    ]
    decade = lo
    while decade <= hi:
        gx = x(decade)
        out.append(f"<line x1='{gx:.1f}' y1='{top - 8}' x2='{gx:.1f}' y2='{height - 30}' stroke='#ddd'/>")
        out.append(f"<text x='{gx:.1f}' y='{height - 15}' text-anchor='middle' fill='#555'>{fmt_ns(decade)}</text>")
        decade *= 10
    y = top
    for kind, name, ns in rows:
        if kind == "caption":
            y += 6
            out.append(f"<text x='{left_pad}' y='{y + bar_h - 4}' font-weight='bold'>{html.escape(name)}</text>")
            y += bar_h + 4
            continue
        colour = "#d9534f" if name.startswith("safecall") else (
            "#999" if name in ("bare_call", "map_lookup_only", "rwlock_map_lookup_only", "dashmap_lookup_only") or name.startswith("clock") else "#5b8fd9")
        out.append(f"<text x='{label_w - 8}' y='{y + bar_h - 4}' text-anchor='end'>{html.escape(name)}</text>")
        out.append(f"<rect x='{label_w}' y='{y}' width='{max(x(ns) - label_w, 1):.1f}' height='{bar_h}' fill='{colour}'/>")
        out.append(f"<text x='{x(ns) + 4:.1f}' y='{y + bar_h - 4}' fill='#333'>{fmt_ns(ns)}</text>")
        y += bar_h + gap
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--out", default="benches/results")
    args = ap.parse_args()
    data = load(args.criterion)
    if not data:
        raise SystemExit(f"no criterion estimates under {args.criterion}: run `cargo bench -p safecall-bench` first")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "overhead.md"), "w") as f:
        f.write("Median time per call (criterion, one run); × bare call = against "
                "`success_retry/bare_call`.\n\n" + table(data))
    with open(os.path.join(args.out, "overhead.svg"), "w") as f:
        f.write(svg(data))
    print(f"wrote {args.out}/overhead.md and {args.out}/overhead.svg "
          f"({sum(len(v) for v in data.values())} benchmarks)")


if __name__ == "__main__":
    main()
