#!/usr/bin/env python3
"""Summarise a `py-spy record --format raw` profile (collapsed stacks): top self and inclusive frames.

    python bench/pyspy_top.py docs/bench-runs/pyspy-ours-1p-eventlet-1000.txt [--top 25]

Idle frames (the hub waiting in epoll/select/poll, sleeping greenlets) are counted apart so the
percentages are of the time the server was actually working.
"""
import argparse
import re
import sys
from collections import Counter

IDLE = re.compile(r"\b(wait|poll|select|epoll|sleep|_wait_for|acquire|get|recv_into|readinto)\b.*"
                  r"\((?:threading|selectors|eventlet/hubs|gevent/hub|queue|socket|ssl|hub)")


def frame_name(frame):
    # "function (path/to/file.py:123)" -> "function (file.py)" with the package tail kept short
    m = re.match(r"(.*) \((.*?):?(\d+)?\)$", frame.strip())
    if not m:
        return frame.strip()
    func, path = m.group(1), m.group(2)
    parts = path.split("/")
    for anchor in ("site-packages", "allynet", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + (1 if anchor != "allynet" else 0):]
            break
    return f"{func} ({'/'.join(parts[-3:])})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    self_c, incl_c = Counter(), Counter()
    total = idle = 0
    with open(args.path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
            if not frames:
                continue
            total += n
            leaf = frames[-1]
            if IDLE.search(leaf) or any(k in leaf for k in ("epoll", "(selectors.py", "hubs/poll", "hubs/epolls")):
                idle += n
                continue
            self_c[frame_name(leaf)] += n
            for f in set(frame_name(f) for f in frames):
                incl_c[f] += n
    busy = total - idle
    print(f"samples {total}, idle {idle} ({100 * idle / max(total, 1):.0f}%), busy {busy}")
    print(f"\nTop self frames (% of busy samples):")
    for name, n in self_c.most_common(args.top):
        print(f"  {100 * n / max(busy, 1):5.1f}%  {name}")
    print(f"\nTop inclusive frames (% of busy samples):")
    for name, n in incl_c.most_common(args.top + 15):
        print(f"  {100 * n / max(busy, 1):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
