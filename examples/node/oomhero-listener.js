// Receives oomhero's HTTP notifications in node.
//
// The application container declares
// OOMHERO_NOTIFY_URL=http://127.0.0.1:8080/oomhero (the pod shares one
// network namespace); oomhero then POSTs a small JSON object
// ({"container":..,"level":"warning"|"critical",..,"percent":..,..}) on each
// decision that would send a signal. Signals are the wrong default for node:
// node installs a SIGUSR1 handler itself that opens the inspector (a
// debugger any container of the pod can connect to). See README.md.
//
// On warning the example drops its cache; on critical it also stops caching.
// Run: node oomhero-listener.js   (PORT, default 8080)
'use strict';
const http = require('node:http');

const port = Number(process.env.PORT || 8080);
const cache = new Map();
let caching = true;

function onLevel(n) {
  if (n.level === 'warning') {
    const size = cache.size;
    cache.clear();
    console.log(`example: warning: dropped ${size} cache entries`);
  } else if (n.level === 'critical') {
    caching = false;
    cache.clear();
    console.log('example: critical: cache dropped, caching stopped');
  }
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/oomhero') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { if (body.length < 65536) body += c; });
  req.on('end', () => {
    let n;
    try {
      n = JSON.parse(body);
    } catch {
      res.writeHead(400).end();
      return;
    }
    console.log(`oomhero: level=${n.level} percent=${n.percent}`);
    onLevel(n);
    res.writeHead(204).end();
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`example: listening on 127.0.0.1:${port}/oomhero`);
});

let i = 0; // the "work": a cache that grows slowly
setInterval(() => { if (caching) cache.set(i++, 'x'.repeat(1024)); }, 100);
