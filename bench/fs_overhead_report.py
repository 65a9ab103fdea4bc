#!/usr/bin/env python3
"""fs_overhead_report.py - turns the raw runs of fs_overhead.sh into its report.

Reads the JSON lines fs_overhead.sh appended per run ({"workload", "side", "run",
"value", ...details}), prints the Markdown report on stdout and writes every raw
figure, the medians and the ratios to --json. Called by fs_overhead.sh; not
meant to be run by hand, though it can be, on a kept work dir (--keep).

A side named passthrough_hp (fs_overhead.sh --passthrough-hp) is the measured
reference: the table then shows its figure and ratio, and whether each scribefs
side is at or above it, in place of the fixed reference ratios of issue 2 (those
stay in the JSON as passthrough_hp_ratio).
"""
import argparse
import json
import statistics
import sys

PHP = "passthrough_hp"

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
    fuse_sides = [s for s in sides[1:] if s != PHP]  # the scribefs sides
    php = PHP in sides
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
        "sides": {s: {("passthrough_hp_opts" if s == PHP else "scribefs_opts"): side_opts.get(s, [])}
                  for s in sides},
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
        if php:
            w["at_or_above_passthrough_hp"] = {}
        for s in sides:
            rs = sorted((r for r in mine if r["side"] == s), key=lambda r: r["run"])
            w["runs"][s] = rs
            w["median"][s] = statistics.median(r["value"] for r in rs) if rs else None
            if s != "native" and rs:
                w["daemon_cpu_s_median"][s] = statistics.median(r["daemon_cpu_s"] for r in rs)
        nat = w["median"].get("native")
        for s in sides[1:]:
            m = w["median"].get(s)
            w["ratio"][s] = (m / nat) if (m is not None and nat) else None
        if php:
            p = w["median"].get(PHP)
            for s in fuse_sides:
                m = w["median"].get(s)
                w["at_or_above_passthrough_hp"][s] = (m >= p) if (m is not None and p is not None) else None
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
    if php:
        head += ["passthrough_hp", "ratio", "scribefs at or above passthrough_hp"]
    else:
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
        if php:
            verdict = []
            for s in fuse_sides:
                v = w["at_or_above_passthrough_hp"][s]
                ok = "-" if v is None else ("yes" if v else "no")
                verdict.append(ok if len(fuse_sides) == 1 else f"{s.split('-')[-1]}: {ok}")
            row += [f"{fmt(w['median'][PHP])} {unit}", fmt_ratio(w["ratio"][PHP]), ", ".join(verdict) or "-"]
        else:
            row += [fmt_ratio(ref), ", ".join(verdict) or "-"]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    if php:
        out.append(f"Medians of {a.runs} runs per side; ratio = side / native "
                   "(throughput, IOPS or files/s: higher is better); passthrough_hp is libfuse's "
                   "example, measured in the same run (at or above: scribefs' median >= its median). "
                   "The fixed reference ratios of issue 2 are in the JSON (passthrough_hp_ratio).")
    else:
        out.append(f"Medians of {a.runs} runs per side; ratio = scribefs / native "
                   "(throughput, IOPS or files/s: higher is better).")
    out.append("")
    out.append("Every run (run 1, 2, ...), and the daemon's CPU seconds per run (median):"
               if not php else
               "Every run (run 1, 2, ...), and the daemon's (scribefs' or passthrough_hp's) CPU seconds per run (median):")
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
              "scribefs_binary", "scribefs_revision", "scribefs_binary_mtime", "scribefs_opts",
              "passthrough_hp_binary", "passthrough_hp_binary_mtime", "passthrough_hp_build"] + [f"bdi_{s}" for s in sides[1:]] + [
              "loadavg_start", "loadavg_end", "date"]:
        if k in machine:
            out.append(f"- {k}: {machine[k] or '(none)'}")
    for s in fuse_sides:
        out.append(f"- {label[s]}: options `{' '.join(side_opts.get(s, [])) or '(defaults)'}`")
    if php:
        out.append(f"- passthrough_hp: options `{' '.join(side_opts.get(PHP, [])) or '(defaults)'}`")
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
