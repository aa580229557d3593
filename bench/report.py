#!/usr/bin/env python3
"""The benchmark report, from the benchmarks' JSON results (build/bench/*.json).

  report.py --results DIR --print ipc                 the IPC tables on stdout
  report.py --results DIR --doc docs/benchmarks.md    regenerate the tables between markers
            [--png docs/benchmarks-transports.png]    and draw the transports side by side

In the doc, a generated table sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`;
everything outside the markers (the prose, the history of earlier runs) is left as it is. A
section whose JSON is missing keeps its previous table.
"""
import argparse
import json
import os
import re
import statistics
import sys


def load(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2, unit=""):
    return "—" if v is None else f"{v:.{digits}f}{unit}"


# ---- IPC ----

KINDS = [
    ("tcp", "TCP, veth + bridge"),
    ("spliced", "TCP, spliced by colo"),
    ("unix", "colo Unix pair"),
    ("channel", "**colo channel between two pods** (in place)"),
    ("channel_copy", "colo channel, every byte copied"),
    ("local", "same rings, two threads of one process (monolith)"),
    ("local_copy", "same rings, one process, every byte copied"),
]


def ipc_medians(ipc):
    """{kind: {measure: {field: median over runs}}}"""
    out = {}
    for s in ipc["samples"]:
        m = out.setdefault(s["kind"], {}).setdefault(s["measure"], {})
        for field in ("p50", "p99", "gbps", "messagesPerSecond"):
            if field in s:
                m.setdefault(field, []).append(s[field])
    return {k: {m: {f: median(v) for f, v in fields.items()} for m, fields in ms.items()} for k, ms in out.items()}


def floor_summary(ipc, between):
    runs = [r for r in ipc["floor"] if r.get("between") == between]
    keys = ("floorP50", "floorP99", "pairP50", "pairP99", "channelP50", "channelP99", "ratioP50", "ratioP99", "pairRatioP50", "pairRatioP99")
    return runs, {k: median([r.get(k) for r in runs]) for k in keys}


def conditions(ipc):
    m = ipc["machine"]
    return (f"Run of {ipc['date']} on {m['cpus']} vCPUs ({m['cpu']}), kernel {m['kernel']}; load average "
            f"(1, 5, 15 min) {ipc['loadavg']['start']} at the start, {ipc['loadavg']['end']} at the end.")


def table_ipc_floor(ipc):
    rows = ["| between | run | floor p50 / p99 | two-line floor p50 / p99 (ratio) | channel p50 / p99 | **ratio p50 / p99** (target ≤ 1.5) |",
            "| --- | --- | --- | --- | --- | --- |"]

    def cells(r):
        return (f"{fmt(r['floorP50'], 3)} / {fmt(r['floorP99'], 3)} µs | "
                f"{fmt(r.get('pairP50'), 3)} / {fmt(r.get('pairP99'), 3)} µs ({fmt(r.get('pairRatioP50'))} / {fmt(r.get('pairRatioP99'))}) | "
                f"{fmt(r['channelP50'], 3)} / {fmt(r['channelP99'], 3)} µs")
    for between, name in (("pods", "two pods (channel)"), ("threads", "two threads (in-process rings)")):
        runs, med = floor_summary(ipc, between)
        for i, r in enumerate(runs, 1):
            rows.append(f"| {name} | {i} of {len(runs)} ({r['rounds']} rounds) | {cells(r)} | {fmt(r['ratioP50'])} / {fmt(r['ratioP99'])} |")
        if runs:
            rows.append(f"| **{name}** | **median** | {cells(med)} | **{fmt(med['ratioP50'])} / {fmt(med['ratioP99'])}** |")
    return "\n".join(rows) + "\n\n" + conditions(ipc)


def table_ipc(ipc):
    med = ipc_medians(ipc)
    rows = [f"Medians of {ipc['runs']} runs.", "",
            "| | 64 B RTT p50 / p99 | 64 KiB RTT p50 / p99 | 64 B round trips/s | 64 B messages/s streamed | 64 KiB stream |",
            "| --- | --- | --- | --- | --- | --- |"]
    for kind, name in KINDS:
        m = med.get(kind)
        if not m:
            continue
        p64, p64k = m.get("ping64", {}), m.get("ping64k", {})
        s64, s64k = m.get("stream64", {}), m.get("stream64k", {})
        rate = f"{1000 / p64['p50']:.0f} k" if p64.get("p50") else "—"
        mps = f"{s64['messagesPerSecond'] / 1000:.0f} k" if s64.get("messagesPerSecond") else "—"
        gb = f"{s64k['gbps']:.2f} Gbit/s" if s64k.get("gbps") else "—"
        rows.append(f"| {name} | {fmt(p64.get('p50'))} / {fmt(p64.get('p99'))} µs | {fmt(p64k.get('p50'))} / {fmt(p64k.get('p99'))} µs | "
                    f"{rate} | {mps} | {gb} |")
    ch, lo = med.get("channel", {}).get("ping64", {}), med.get("local", {}).get("ping64", {})
    ch64k = med.get("channel", {}).get("ping64k", {})
    if ch.get("p50") and lo.get("p50"):
        rows += ["", f"Channel between two pods / the same rings in one process, 64 B round trip: "
                     f"{ch['p50'] / lo['p50']:.2f}x ({ch['p50']:.3f} µs vs {lo['p50']:.3f} µs); 64 KiB / 64 B on the channel: "
                     f"{(ch64k.get('p50') or 0) / ch['p50']:.2f}x."]
    return "\n".join(rows)


# ---- the other benchmarks ----

def table_cni(r):
    rows = ["| | median | p90 | p99 |", "| --- | --- | --- | --- |"]
    for key, name in (("base", "bridge + host-local, ADD+DEL"), ("colo", "bridge + host-local + colo-cni, ADD+DEL")):
        rows.append(f"| {name} | {fmt(r[key]['p50'])} ms | {fmt(r[key]['p90'])} ms | {fmt(r[key]['p99'])} ms |")
    rows.append(f"| colo-cni ADD alone | {fmt(r['coloCniAdd']['p50'])} ms | | {fmt(r['coloCniAdd']['p99'])} ms |")
    rows.append(f"| colo-cni DEL alone | {fmt(r['coloCniDel']['p50'])} ms | | {fmt(r['coloCniDel']['p99'])} ms |")
    rows.append(f"| **added by colo-cni at the median** | **{fmt(r['overheadMedianMs'])} ms** | | |")
    rows.append(f"| paired difference (same iteration) | {fmt(r['pairedDifference']['p50'])} ms | | {fmt(r['pairedDifference']['p99'])} ms |")
    return "\n".join(rows) + f"\n\n{r['pods']} pods, {r['failures']} failed cycles."


def table_endpoint(add, restart):
    rows = []
    if add:
        rows += [f"{add['pods']} pods, {add['failures']} failures.", "", "| | median | p90 | p99 |", "| --- | --- | --- | --- |"]
        for key, name in (("addMs", "colo-cni ADD with endpoint (exec to exit)"), ("addToHelloMs", "ADD exec to hello reply over @colo")):
            if key in add:
                rows.append(f"| {name} | {fmt(add[key].get('p50'))} ms | {fmt(add[key].get('p90'))} ms | {fmt(add[key].get('p99'))} ms |")
    if restart:
        rows += ["", "| restart | |", "| --- | --- |",
                 f"| all {restart['pods']} endpoints answer hello ({restart['answering']} answering) | {fmt(restart['allAnsweringMs'], 1)} ms |"]
    return "\n".join(rows)


def table_datapath(d):
    rows = [f"Medians of {d['runs']} runs.", "", "| | throughput | p50 one-way |", "| --- | --- | --- |"]
    for key, name in (("plain", "veth + bridge, without colo"), ("colo", "**veth + bridge, with colo (spliced)**"),
                      ("loopback", "loopback (reference)"), ("unix", "Unix socket (reference)")):
        rows.append(f"| {name} | {fmt(d['gbps'][key])} Gbit/s | {fmt(d['p50us'][key])} µs |")
    rows.append(f"\nThroughput {d['throughputRatio']:.2f}x (target ≥ 2.5x), p50 latency {d['latencyRatio']:.2f}x (target ≤ 0.6x).")
    return "\n".join(rows)


def table_service(s):
    g, p = s["gbps"], s["p50us"]
    p99 = s.get("p99us", {})
    rows = [f"Medians of {s['runs']} runs; {s['translated']} connects translated, {s['spliced']} sockets spliced.", "",
            "| | throughput | vs plain | p50 one-way | p99 one-way | vs plain |", "| --- | --- | --- | --- | --- | --- |"]
    for key, name in (("plain", "ClusterIP via kube-proxy DNAT, without colo"), ("colo", "**ClusterIP, with colo (translated, spliced)**"),
                      ("podIpPlain", "pod IP, without colo (reference)"), ("podIpColo", "pod IP, with colo (spliced, reference)")):
        rows.append(f"| {name} | {fmt(g[key])} Gbit/s | {g[key] / g['plain']:.2f}x | {fmt(p[key])} µs | {fmt(p99.get(key), unit=' µs')} | {p[key] / p['plain']:.2f}x |")
    rows.append(f"\nThroughput {s['throughputRatio']:.2f}x (target ≥ 2.5x), p50 latency {s['latencyRatio']:.2f}x (target ≤ 0.6x).")
    return "\n".join(rows)


def table_clients(c):
    rtt, p99 = c["rttP50us"], c.get("rttP99us", {})
    rows = [f"Medians of {c['runs']} runs, 64 B round trips against the same C++ server, µs (p50 / p99).", "",
            "| | C++ (libcolo) | Go | Python |", "| --- | --- | --- | --- |"]
    for key, name in (("unix", "colo Unix pair, pod to pod"), ("channel", "colo channel, pod to pod, in place"), ("inProcess", "same rings, one process (threads)")):
        cells = [f"{fmt(rtt[key].get(lang))} / {fmt(p99.get(key, {}).get(lang))}" if lang in rtt[key] else "—" for lang in ("cpp", "go", "python")]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append(f"\nGo channel vs C++: {c['goChannelVsCpp']:.2f}x (target ≤ 1.5x); Go Unix pair vs C++: {c['goUnixVsCpp']:.2f}x.")
    return "\n".join(rows)


def table_kube(k):
    a, rss = k["applySeconds"], k["rssKiB"]
    return "\n".join([
        "| measure | result |", "| --- | --- |",
        f"| cluster pods / on this node | {k['clusterPods']} / {k['localPods']} |",
        f"| watch event to colo on: p50 / **p99** (target < 10 ms) / max | {a['p50'] * 1000:.2f} / **{a['p99'] * 1000:.2f}** / {a['max'] * 1000:.2f} ms |",
        f"| addresses in the datapath map once all are on | {k['addressesInMap']} |",
        f"| colo-node RSS: synced / dormant / active | {rss['synced'] // 1024} / {rss['dormant'] // 1024} / {rss['active'] // 1024} MiB |"])


def sections(results):
    out = {}
    ipc = load(results, "ipc.json")
    if ipc and "samples" in ipc:
        out["ipc-floor"] = table_ipc_floor(ipc)
        out["ipc"] = table_ipc(ipc)
    cni = load(results, "cni_overhead.json")
    if cni:
        out["cni"] = table_cni(cni)
    add, restart = load(results, "endpoint_add.json"), load(results, "endpoint_restart.json")
    if add or restart:
        out["endpoint"] = table_endpoint(add, restart)
    dp = load(results, "datapath.json")
    if dp:
        out["datapath"] = table_datapath(dp)
    svc = load(results, "service.json")
    if svc:
        out["service"] = table_service(svc)
    clients = load(results, "clients.json")
    if clients:
        out["clients"] = table_clients(clients)
    kube = load(results, "kube.json")
    if kube:
        out["kube"] = table_kube(kube)
    return out


def rewrite_doc(path, tables):
    with open(path) as f:
        doc = f.read()
    for name, table in tables.items():
        pattern = re.compile(r"(<!-- generated: %s -->\n).*?(<!-- end: %s -->)" % (re.escape(name), re.escape(name)), re.S)
        doc, n = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(2), doc)
        if n == 0:
            print(f"report: no markers for '{name}' in {path}; table not written", file=sys.stderr)
    with open(path, "w") as f:
        f.write(doc)


# ---- the picture ----

def draw(ipc, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    med = ipc_medians(ipc)
    _, fl = floor_summary(ipc, "pods")
    _, th = floor_summary(ipc, "threads")
    # The floor, the channel and the in-process rings from the interleaved floor runs; the others
    # from the transport runs.
    rtt = [("cache-line floor", fl["floorP50"], fl["floorP99"]),
           ("two-line floor\n(a line each way)", fl["pairP50"], fl["pairP99"]),
           ("colo channel\n(two pods)", fl["channelP50"], fl["channelP99"]),
           ("in-process rings\n(two threads)", th["channelP50"], th["channelP99"])]
    for kind, name in (("unix", "colo Unix pair"), ("spliced", "TCP spliced by colo"), ("tcp", "TCP over veth")):
        p = med.get(kind, {}).get("ping64", {})
        rtt.append((name, p.get("p50"), p.get("p99")))
    rtt = [r for r in rtt if r[1]]
    thr = []
    for kind, name in (("channel_copy", "colo channel\n(bytes copied)"), ("local_copy", "in-process rings\n(bytes copied)"),
                       ("unix", "colo Unix pair"), ("spliced", "TCP spliced\nby colo"), ("tcp", "TCP over veth")):
        s = med.get(kind, {}).get("stream64k", {})
        if s.get("gbps"):
            thr.append((name, s["gbps"]))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    xs = range(len(rtt))
    w = 0.38
    b1 = ax1.bar([x - w / 2 for x in xs], [r[1] for r in rtt], w, label="p50", color="#2b6cb0")
    b2 = ax1.bar([x + w / 2 for x in xs], [r[2] for r in rtt], w, label="p99", color="#90cdf4")
    ax1.set_yscale("log")
    ax1.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax1.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax1.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.set_xticks(list(xs))
    ax1.set_xticklabels([r[0] for r in rtt], rotation=20, ha="right")
    ax1.set_ylabel("64 B round trip, µs (log scale)")
    ax1.set_title("Round trip between two pods")
    ax1.bar_label(b1, fmt="%.2f", fontsize=8)
    ax1.bar_label(b2, fmt="%.2f", fontsize=8)
    ax1.legend()
    if thr:
        b3 = ax2.bar(range(len(thr)), [t[1] for t in thr], 0.6, color="#2f855a")
        ax2.set_yscale("log")
        # Gbit/s spans 10 to a few hundred: label 1-2-5 steps, not only the decades.
        ax2.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax2.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax2.set_xticks(range(len(thr)))
        ax2.set_xticklabels([t[0] for t in thr], rotation=20, ha="right")
        ax2.set_ylabel("64 KiB stream, Gbit/s (log scale)")
        ax2.set_title("Throughput, one stream")
        ax2.bar_label(b3, fmt="%.1f", fontsize=8)
    fig.suptitle(f"colo transports, {ipc['date']} ({ipc['machine']['cpus']} vCPUs, load {ipc['loadavg']['start'].split()[0]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--doc")
    ap.add_argument("--png")
    ap.add_argument("--print", dest="show", choices=["ipc", "all"])
    a = ap.parse_args()
    tables = sections(a.results)
    if a.show:
        for name, table in tables.items():
            if a.show == "all" or name.startswith(a.show):
                print(f"\n{table}")
    if a.doc:
        rewrite_doc(a.doc, tables)
        print(f"report: {', '.join(tables) or 'nothing'} regenerated in {a.doc}")
    if a.png:
        ipc = load(a.results, "ipc.json")
        if ipc and "samples" in ipc:
            draw(ipc, a.png)
            print(f"report: picture in {a.png}")


if __name__ == "__main__":
    main()
