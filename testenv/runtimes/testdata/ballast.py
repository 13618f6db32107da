"""The suite's memory growth for Python: `python3 ballast.py example.py ARGS`.

A daemon thread waits for $BALLAST_DIR/ballast.go, then allocates (and
writes) 1 MiB bytes objects at $BALLAST_RATE MiB/s until
$BALLAST_DIR/ballast.stop exists, and holds them. The example runs in the
main thread (where Python runs signal handlers).
"""
import os
import runpy
import sys
import threading
import time

DIR = os.environ.get("BALLAST_DIR", "/tmp")
RATE = float(os.environ.get("BALLAST_RATE", "20"))
held = []


def grow():
    while not os.path.exists(os.path.join(DIR, "ballast.go")):
        time.sleep(0.1)
    print(f"ballast: growing at {RATE} MiB/s", flush=True)
    while not os.path.exists(os.path.join(DIR, "ballast.stop")):
        held.append(b"\x01" * (1 << 20))
        time.sleep(1 / RATE)
    print(f"ballast: holding {len(held)} MiB", flush=True)


threading.Thread(target=grow, name="ballast", daemon=True).start()
if len(sys.argv) > 1:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    threading.Event().wait()
