#!/usr/bin/env python3
"""fs_overhead_report.py - turns the raw runs of fs_overhead.sh into its report.

Reads the JSON lines fs_overhead.sh appended per run ({"workload", "side", "run",
"value", ...details}), prints the Markdown report on stdout and writes every raw
figure, the medians and the ratios to --json. Called by fs_overhead.sh; not
meant to be run by hand, though it can be, on a kept work dir (--keep).
"""
import argparse
import json
import statistics
import sys

# name, what it is, unit, reference ratio of libfuse 3.14's passthrough_hp (issue 2)
WORKLOADS = [
    ("seqwrite", "sequential write 1 GiB + fsync", "MiB/s", 0.44),
    ("seqwrite-cached", "cached sequential overwrite, 10 s", "MiB/s", 0.29),
    ("randwrite", "random 4 KiB write, 15 s", "IOPS", 1.06),
    ("seqread-warm", "warm sequential read, 10 s", "MiB/s", 0.29),
    ("seqread-cold", "cold sequential read 1 GiB", "MiB/s", None),
    ("create", "small files: create + 4 KiB + close", "files/s", 0.16),
    ("stat", "small files: stat", "files/s", 0.07),
    ("delete", "small files: delete", "files/s", 0.67),
]


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--sides", required=True)
    ap.add_argument("--side-opts", default="")
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    sides = a.sides.split(",")
    fuse_sides = sides[1:]
    side_opts = {}
    for item in a.side_opts.split(";"):
        if "=" in item:
            k, v = item.split("=", 1)
            side_opts[k] = v.split()
    machine = {}
    for line in open(a.machine):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            machine[k] = v
    runs = [json.loads(line) for line in open(a.raw) if line.strip()]

    result = {
        "command": a.command,
        "machine": machine,
        "runs_per_side": a.runs,
        "sides": {s: {"scribefs_opts": side_opts.get(s, [])} for s in sides},
        "workloads": {},
    }
    present = []
    for name, desc, unit, ref in WORKLOADS:
        mine = [r for r in runs if r["workload"] == name]
        if not mine:
            continue
        present.append((name, desc, unit, ref))
        w = {"description": desc, "unit": unit, "passthrough_hp_ratio": ref,
             "runs": {}, "median": {}, "ratio": {}, "daemon_cpu_s_median": {}}
        for s in sides:
            rs = sorted((r for r in mine if r["side"] == s), key=lambda r: r["run"])
            w["runs"][s] = rs
            w["median"][s] = statistics.median(r["value"] for r in rs) if rs else None
            if s != "native" and rs:
                w["daemon_cpu_s_median"][s] = statistics.median(r["daemon_cpu_s"] for r in rs)
        nat = w["median"].get("native")
        for s in fuse_sides:
            m = w["median"].get(s)
            w["ratio"][s] = (m / nat) if (m is not None and nat) else None
        result["workloads"][name] = w

    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    # ---- Markdown ----
    out = []
    label = {s: ("scribefs" if s == "scribefs" else f"scribefs {s.replace('-', ' ')}")
             for s in fuse_sides}
    head = ["workload", "native"]
    for s in fuse_sides:
        head += [label[s], "ratio"]
    head += ["passthrough_hp ratio", "at or above ref"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    for name, desc, unit, ref in present:
        w = result["workloads"][name]
        row = [f"{desc}", f"{fmt(w['median']['native'])} {unit}"]
        verdict = []
        for s in fuse_sides:
            row += [f"{fmt(w['median'][s])} {unit}", fmt_ratio(w["ratio"][s])]
            if ref is not None and w["ratio"][s] is not None:
                ok = "yes" if w["ratio"][s] >= ref else "no"
                verdict.append(ok if len(fuse_sides) == 1 else f"{s.split('-')[-1]}: {ok}")
        row += [fmt_ratio(ref), ", ".join(verdict) or "-"]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append(f"Medians of {a.runs} runs per side; ratio = scribefs / native "
               "(throughput, IOPS or files/s: higher is better).")
    out.append("")
    out.append("Every run (run 1, 2, ...), and the daemon's CPU seconds per run (median):")
    out.append("")
    out.append("| workload | side | runs | daemon CPU s |")
    out.append("|---|---|---|---:|")
    for name, desc, unit, ref in present:
        w = result["workloads"][name]
        for s in sides:
            vals = ", ".join(fmt(r["value"]) for r in w["runs"][s])
            cpu = w["daemon_cpu_s_median"].get(s)
            out.append(f"| {name} | {s} | {vals} {unit} | {'-' if cpu is None else f'{cpu:.2f}'} |")
    out.append("")
    out.append("Machine:")
    out.append("")
    for k in ["nproc", "cpu", "memory", "kernel", "os", "workdir_fs", "topdir_flag", "fio", "libfuse",
              "scribefs_binary", "scribefs_revision", "scribefs_binary_mtime", "scribefs_opts", "loadavg_start", "loadavg_end", "date"]:
        if k in machine:
            out.append(f"- {k}: {machine[k] or '(none)'}")
    for s in fuse_sides:
        out.append(f"- {label[s]}: options `{' '.join(side_opts.get(s, [])) or '(defaults)'}`")
    out.append("")
    out.append("Command:")
    out.append("")
    out.append("```")
    out.append(a.command)
    out.append("```")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
