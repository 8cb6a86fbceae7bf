// A real `codecrafter serve` for the end-to-end scripts: the embedded
// default (its own store in a fresh data dir, in-process bus and queue,
// the Docker sandbox) on a free port, or BASE_URL's server when set.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    }).on('error', fail);
  });
}

/**
 * Starts CODECRAFTER_BIN (default ../bin/codecrafter) and waits for
 * /readyz. One run at a time (-worker-concurrency 1): a second one waits
 * in the queue. Returns { base, stop }; stop() is safe to call twice, and
 * the server goes with this process when it exits or is interrupted.
 */
export async function startServer(log) {
  if (process.env.BASE_URL) return { base: process.env.BASE_URL.replace(/\/$/, ''), stop: async () => {} };
  const bin = resolve(process.env.CODECRAFTER_BIN ?? '../bin/codecrafter');
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'cc-e2e-'));
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ['serve', '-addr', `127.0.0.1:${port}`, '-data-dir', dataDir, '-metrics-addr', '', '-log-format', 'text', '-log-level', 'warn',
    '-worker-concurrency', '1'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, MONGO_URI: '', REDIS_URL: '', AMQP_URL: '' },
  });
  // Interrupted (make stopped), or crashed on an error no step caught:
  // take the server along.
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  process.once('exit', () => server.exitCode === null && server.kill('SIGTERM'));
  const stop = async () => {
    if (server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => (server.exitCode !== null ? r() : server.once('exit', r)));
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const exited = new Promise((_, fail) => server.once('exit', (c) => fail(new Error(`server exited (${c}) before it was ready`))));
  exited.catch(() => {}); // after ready, an exit shows in the steps
  const ready = (async () => {
    for (;;) {
      try {
        if ((await fetch(`${base}/readyz`)).ok) return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    await Promise.race([ready, exited, new Promise((_, f) => setTimeout(() => f(new Error('server not ready in 60 s')), 60_000))]);
  } catch (e) {
    await stop();
    throw e;
  }
  log('server ready at', base);
  return { base, stop };
}
