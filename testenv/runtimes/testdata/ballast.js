// The suite's memory growth for node, loaded with `node -r ballast.js
// example.js`: waits for $BALLAST_DIR/ballast.go, then allocates (and fills)
// 1 MiB Buffers at $BALLAST_RATE MiB/s until $BALLAST_DIR/ballast.stop
// exists, and holds them. Timers keep the event loop alive.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const dir = process.env.BALLAST_DIR || '/tmp';
const rate = Number(process.env.BALLAST_RATE || 20);
const held = [];
const wait = setInterval(() => {
  if (!fs.existsSync(path.join(dir, 'ballast.go'))) return;
  clearInterval(wait);
  console.log(`ballast: growing at ${rate} MiB/s`);
  const grow = setInterval(() => {
    if (fs.existsSync(path.join(dir, 'ballast.stop'))) {
      clearInterval(grow);
      console.log(`ballast: holding ${held.length} MiB`);
      setInterval(() => held.length, 60000);
      return;
    }
    held.push(Buffer.alloc(1 << 20, 1));
  }, 1000 / rate);
}, 100);
