#!/usr/bin/env python3
"""Run a command while sampling a server's resident memory; write the peak as JSON (stdlib only).

usage: rss_peak.py --pid PID --out FILE [--interval 0.2] -- CMD [ARGS...]

RSS = VmRSS of PID plus VmRSS of its direct children (nginx master + worker), read from
/proc/<pid>/status every --interval seconds from just before CMD starts until it exits.
(Summing over processes counts pages they share twice; for nginx that is the master's
few MiB.) The command's stdout/stderr are passed through; the exit status is the command's.
JSON written to FILE: {"pid", "interval_s", "samples", "start_kib", "peak_kib", "end_kib"}.
"""
import argparse
import glob
import json
import signal
import subprocess
import sys


def tree_rss_kib(pid):
    pids = [pid]
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            pids += [int(x) for x in open(f).read().split()]
        except OSError:
            pass
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        p.error("no command")
    first = tree_rss_kib(a.pid)
    samples, peak, last = 1, first, first
    proc = subprocess.Popen(cmd)

    def forward(signum, _frame):
        proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    while True:
        try:
            rc = proc.wait(timeout=a.interval)
            break
        except subprocess.TimeoutExpired:
            pass
        last = tree_rss_kib(a.pid)
        samples += 1
        peak = max(peak, last)
    last = tree_rss_kib(a.pid)
    samples += 1
    peak = max(peak, last)
    with open(a.out, "w") as f:
        json.dump({"pid": a.pid, "interval_s": a.interval, "samples": samples,
                   "start_kib": first, "peak_kib": peak, "end_kib": last}, f)
        f.write("\n")
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
