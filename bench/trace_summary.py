#!/usr/bin/env python3
"""Summarises a Kineto (Chrome) trace of training steps on one GPU: where the
GPU time goes (GEMM, attention, NCCL, optimizer, other), how much of the
window the GPU is idle, how much NCCL time is not hidden behind compute, and
the host calls that block (synchronisations, pageable copies).

    bench/trace_summary.py TRACE.json [TOP_N]
"""
import json
import sys
from collections import defaultdict


def union(intervals):
    """Merged, sorted list of [start, end) intervals."""
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def total(intervals):
    return sum(e - s for s, e in intervals)


def intersect(a, b):
    i = j = 0
    out = []
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append([s, e])
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def kind(name):
    n = name.lower()
    if "nccl" in n:
        return "nccl"
    if "adam" in n:
        return "optimizer"
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "sm90", "cublas", "matmul", "grouped_mm")):
        return "gemm"
    if "memcpy" in n or "memset" in n:
        return "memcpy/memset"
    return "other"


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if not gpu:
        print("no GPU events in", path)
        return
    start = min(e["ts"] for e in gpu)
    end = max(e["ts"] + e["dur"] for e in gpu)
    window = end - start
    busy = union([e["ts"], e["ts"] + e["dur"]] for e in gpu)
    nccl = union([e["ts"], e["ts"] + e["dur"]] for e in gpu if kind(e["name"]) == "nccl")
    compute = union([e["ts"], e["ts"] + e["dur"]] for e in gpu if kind(e["name"]) != "nccl")
    print(f"window {window / 1e3:.1f} ms (first to last GPU event)")
    print(f"GPU busy {total(busy) / 1e3:.1f} ms ({100 * total(busy) / window:.1f}%), "
          f"idle {(window - total(busy)) / 1e3:.1f} ms")
    print(f"compute busy {total(compute) / 1e3:.1f} ms; NCCL {total(nccl) / 1e3:.1f} ms, "
          f"of which not overlapped with compute {(total(nccl) - total(intersect(nccl, compute))) / 1e3:.1f} ms")

    # The largest idle gaps, with the GPU events on either side.
    ordered = sorted(gpu, key=lambda e: e["ts"])
    gaps = [(busy[i + 1][0] - busy[i][1], busy[i][1], busy[i + 1][0]) for i in range(len(busy) - 1)]
    gaps.sort(reverse=True)
    print(f"idle gaps: {len(gaps)}, >= 100 us: {sum(1 for g in gaps if g[0] >= 100)} "
          f"totalling {sum(g[0] for g in gaps if g[0] >= 100) / 1e3:.1f} ms")
    for g, a, b in gaps[:10]:
        before = max((e for e in ordered if e["ts"] + e["dur"] <= a + 1), key=lambda e: e["ts"] + e["dur"], default=None)
        after = min((e for e in ordered if e["ts"] >= b - 1), key=lambda e: e["ts"], default=None)
        print(f"  {g / 1e3:7.2f} ms at +{(a - start) / 1e3:8.1f} ms  after {before['name'][:60] if before else '-'}"
              f"  before {after['name'][:60] if after else '-'}")

    by_kind = defaultdict(float)
    by_name = defaultdict(lambda: [0.0, 0])
    by_stream = defaultdict(float)
    for e in gpu:
        by_kind[kind(e["name"])] += e["dur"]
        by_name[e["name"]][0] += e["dur"]
        by_name[e["name"]][1] += 1
        by_stream[e.get("args", {}).get("stream", e.get("tid"))] += e["dur"]
    print("\nGPU time by kind (ms, summed over streams):")
    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {k:16s} {v / 1e3:9.1f}")
    print("by stream (ms):", ", ".join(f"{s}: {v / 1e3:.1f}" for s, v in sorted(by_stream.items(), key=lambda kv: -kv[1])))
    print(f"\ntop {top} GPU events (ms, count, name):")
    for name, (d, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {d / 1e3:9.2f} {n:6d}  {name[:140]}")

    runtime = defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cuda_runtime":
            runtime[e["name"]][0] += e["dur"]
            runtime[e["name"]][1] += 1
    print("\nhost CUDA runtime calls (ms, count):")
    for name, (d, n) in sorted(runtime.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"  {d / 1e3:9.2f} {n:6d}  {name}")


if __name__ == "__main__":
    main()
