#!/usr/bin/env python3
"""Helpers of bench/peers.sh (see its header): the source tree, the churn
workload, and what the RGW test bed says of a bucket, read with radosgw-admin
(through RADOS, so the looks of the benchmark are not counted as S3
requests of the tool under test).

  peers_lib.py tree DIR N              make N files below DIR (deterministic)
  peers_lib.py churn DIR OPS WRITERS   OPS creates/renames/deletes below DIR
  peers_lib.py usage CONF BUCKET       {"ops":..,"bytes_received":..,"bytes_sent":..}
  peers_lib.py compare CONF BUCKET DIR [PREFIX]
        {"equal":bool,"missing":n,"stale":n,"extra":n,"files":n}
  peers_lib.py wait CONF BUCKET DIR TIMEOUT [PREFIX]
        polls compare every second until equal; {"seconds":..} + the last compare
  peers_lib.py report JSONL            the Markdown tables of peers.sh's raw figures
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time


def make_tree(root, n):
    """N files in nested directories, sizes like a source tree (median ~4 KiB)."""
    rng = random.Random(20000)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(4000)]
    for i in range(n):
        d = os.path.join(root, f"pkg{i // 1000:02d}", f"mod{(i // 50) % 20:02d}")
        os.makedirs(d, exist_ok=True)
        size = min(int(rng.lognormvariate(8.3, 1.1)), 262144)
        out = bytearray()
        while len(out) < size:
            out += b" ".join(rng.choices(words, k=12)) + b"\n"
        with open(os.path.join(d, f"f{i:05d}.c"), "wb") as f:
            f.write(out[:size])


def churn(root, ops, writers):
    """Each writer: creates, renames and deletes small files in its own
    directory, ops / writers operations, as fast as it can."""
    def one(w):
        rng = random.Random(w)
        d = os.path.join(root, f"churn{w}")
        os.makedirs(d, exist_ok=True)
        live = []
        for k in range(ops // writers):
            r = rng.random()
            if r < 0.5 or len(live) < 10:
                name = f"n{k}"
                with open(os.path.join(d, name), "wb") as f:
                    f.write(rng.randbytes(rng.randint(10, 4096)))
                live.append(name)
            elif r < 0.8:
                i = rng.randrange(len(live))
                new = f"r{k}"
                os.rename(os.path.join(d, live[i]), os.path.join(d, new))
                live[i] = new
            else:
                i = rng.randrange(len(live))
                os.unlink(os.path.join(d, live.pop(i)))
    ts = [threading.Thread(target=one, args=(w,)) for w in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def admin(conf, *args):
    out = subprocess.run(["radosgw-admin", "-c", conf, *args], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    return json.loads(out or b"null")


def usage(conf, bucket):
    tot = {"ops": 0, "bytes_received": 0, "bytes_sent": 0}
    for e in admin(conf, "usage", "show", "--show-log-entries=true").get("entries", []):
        for b in e.get("buckets", []):
            if b.get("bucket") != bucket:
                continue
            for c in b.get("categories", []):
                for k in tot:
                    tot[k] += c.get(k, 0)
    return tot


def listing(conf, bucket, prefix):
    try:
        entries = admin(conf, "bucket", "list", "--bucket", bucket, "--max-entries", "10000000")
    except subprocess.CalledProcessError:
        return {}
    out = {}
    for e in entries or []:
        name = e.get("name", "")
        if not name.startswith(prefix) or e.get("exists") not in ("true", True):
            continue
        rel = name[len(prefix):]
        if rel.startswith(".scribefs/") or rel.endswith("/") or not rel:
            continue  # scribefs's own keys, directory markers
        out[rel] = (e["meta"]["size"], e["meta"]["etag"])
    return out


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def multipart_etag(path, size, etag):
    """Whether a multipart ETag ("<md5 of the parts' MD5s>-N") fits the file.
    The part size is not in the listing; each tool uses a whole number of MiB
    (rclone 5, scribefs --part-size), so every such size that cuts the file
    into N parts is tried."""
    digest, _, n = etag.partition("-")
    n = int(n)
    mib = 1 << 20
    for k in range(1, 5 * 1024 + 1):
        part = k * mib
        if -(-size // part) != n:
            continue
        whole = hashlib.md5()
        with open(path, "rb") as f:
            for _ in range(n):
                h = hashlib.md5()
                left = part
                while left:
                    b = f.read(min(left, mib))
                    if not b:
                        break
                    h.update(b)
                    left -= len(b)
                whole.update(h.digest())
        if whole.hexdigest() == digest:
            return True
    return False


def local_files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = p
    return out


def compare(conf, bucket, root, prefix="", md5_cache=None):
    remote = listing(conf, bucket, prefix)
    local = local_files(root)
    missing = stale = 0
    cache = md5_cache if md5_cache is not None else {}
    for rel, p in local.items():
        if rel not in remote:
            missing += 1
            continue
        size, etag = remote[rel]
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if size != st.st_size:
            stale += 1
        else:
            key = (p, st.st_mtime_ns, st.st_size, etag)
            if key not in cache:
                if "-" in etag:  # multipart: not an MD5 of the object
                    cache[key] = multipart_etag(p, st.st_size, etag)
                else:
                    cache[key] = md5(p) == etag
            if not cache[key]:
                stale += 1
    extra = sum(1 for rel in remote if rel not in local)
    return {"equal": missing == stale == extra == 0, "missing": missing, "stale": stale,
            "extra": extra, "files": len(local)}


def wait(conf, bucket, root, timeout, prefix=""):
    start = time.monotonic()
    cache = {}
    while True:
        c = compare(conf, bucket, root, prefix, cache)
        if c["equal"] or time.monotonic() - start > timeout:
            c["seconds"] = round(time.monotonic() - start, 1)
            return c
        time.sleep(1)


def report(jsonl):
    rows = [json.loads(l) for l in open(jsonl) if l.strip()]
    mb = lambda b: f"{b / 1e6:,.1f}"
    wire = lambda r: "-" if r["usage"].get("wire_bytes") is None else mb(r["usage"]["wire_bytes"])
    s = lambda ms: f"{ms / 1000:,.1f}"
    def table(workload, title, header, cells):
        rs = [r for r in rows if r["workload"] == workload]
        if not rs:
            return
        print(f"\n{title}")
        print("| side | " + " | ".join(header) + " |")
        print("|---|" + "---:|" * len(header))
        for r in rs:
            print(f"| {r['side']} | " + " | ".join(cells(r)) + " |")
    table("a", "(a) untar, then until the bucket equals the directory",
          ["untar, s", "until equal, s", "S3 requests", "MB sent (wire)", "MB received (usage log)"],
          lambda r: [s(r["untar_ms"]),
                     s(r["until_equal_ms"]) + ("" if r["settle"].get("equal") else " (not equal)"),
                     f"{r['usage']['requests']:,}", wire(r), mb(r["usage"]["bytes_received"])])
    table("b", "(b) 4 KiB changed in a 1 GiB file",
          ["MB sent (wire)", "MB received (usage log)", "S3 requests", "until equal, s"],
          lambda r: [wire(r), mb(r["usage"]["bytes_received"]), f"{r['usage']['requests']:,}",
                     s(r["settle_ms"])])
    table("c", "(c) creates/renames/deletes by 2 writers, then settle (300 s at most)",
          ["churn, s", "settled in, s", "missing", "stale", "extra", "S3 requests"],
          lambda r: [s(r["churn_ms"]), s(r["settle_ms"])] +
                    [str(r["settle"].get(k, "-")) for k in ("missing", "stale", "extra")] +
                    [f"{r['usage']['requests']:,}"])
    table("d", "(d) one file as it was before its last change",
          ["restored the earlier version", "time, s"],
          lambda r: ["yes", s(r["ms"])] if r["restored_previous_version"] else ["no", "-"])


def main(argv):
    cmd = argv[1]
    if cmd == "tree":
        make_tree(argv[2], int(argv[3]))
    elif cmd == "churn":
        churn(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "usage":
        print(json.dumps(usage(argv[2], argv[3])))
    elif cmd == "compare":
        print(json.dumps(compare(argv[2], argv[3], argv[4], argv[5] if len(argv) > 5 else "")))
    elif cmd == "wait":
        print(json.dumps(wait(argv[2], argv[3], argv[4], float(argv[5]),
                              argv[6] if len(argv) > 6 else "")))
    elif cmd == "report":
        report(argv[2])
    else:
        sys.exit(f"peers_lib.py: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
