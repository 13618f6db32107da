"""A small Python service that reacts to oomhero's signals.

oomhero, running as a sidecar in the same pod (shareProcessNamespace: true),
sends this process SIGUSR1 when the container's working set crosses the
warning threshold and SIGUSR2 when it crosses the critical one (again every
cooldown while the level lasts, unless the container declares
OOMHERO_REPEAT=once).

Python itself installs no handler for SIGUSR1 or SIGUSR2: without the
signal.signal calls below their default action would end the process. With
them, /proc/<pid>/status shows them in SigCgt and oomhero's default target
mode (handlers) sends them here.

  SIGUSR1 (warning):  drop the cache and collect garbage.
  SIGUSR2 (critical): also write every thread's stack to a file (at most one
                      a minute), to find what grew even if the OOM killer
                      strikes next.

Python runs signal handlers in the main thread, between bytecodes: keep them
short and let them only set state or do bounded work.
"""
import faulthandler
import gc
import os
import signal
import sys
import tempfile
import time

cache = {}
last_dump = 0.0


def on_warning(signum, frame):
    n = len(cache)
    cache.clear()
    collected = gc.collect()
    print(f"oomhero: warning (SIGUSR1): dropped {n} cache entries, gc collected {collected}", flush=True)


def on_critical(signum, frame):
    global last_dump
    on_warning(signum, frame)
    now = time.monotonic()
    if now - last_dump < 60:
        print("oomhero: critical (SIGUSR2): stacks written less than a minute ago", flush=True)
        return
    last_dump = now
    path = os.path.join(tempfile.gettempdir(), f"oomhero-stacks-{os.getpid()}.txt")
    with open(path, "w") as f:
        faulthandler.dump_traceback(file=f, all_threads=True)
    print(f"oomhero: critical (SIGUSR2): stacks written to {path}", flush=True)


def main():
    signal.signal(signal.SIGUSR1, on_warning)
    signal.signal(signal.SIGUSR2, on_critical)
    print(f"example: pid {os.getpid()}, handlers for SIGUSR1 and SIGUSR2 installed", flush=True)
    i = 0
    while True:
        # The "work": a cache that grows slowly.
        cache[i] = str(i) * 100
        i += 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
