// End to end: two real Chromium contexts as two users on a real
// `codecrafter serve` (embedded store, Docker sandbox). Run by `make
// test-web`; alone: `npm run e2e` in web/ (after `make build`).
//
// BASE_URL: use a running server; otherwise this starts CODECRAFTER_BIN
// (default ../bin/codecrafter) on a free port with a fresh data dir.
// SCREENSHOTS=dir saves pictures of the session page there.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './serve.mjs';

const T = 30_000; // the longest any one step may wait (a cold sandbox included)
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let server, browser;
const pages = {}; // by user, for pictures of a failure
const failures = [];
const log = (...a) => console.log(`[e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);

/** Waits until fn() (run in the page) is truthy. */
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: T, polling: 100 });
  } catch (e) {
    throw new Error(`${what}: not within ${T / 1000} s (${e.message.split('\n')[0]})`);
  }
}

// The editor's text, without the other users' caret labels.
const editorText = (page) => page.evaluate(() => {
  const lines = [...document.querySelectorAll('.cm-content .cm-line')].map((l) => {
    const c = l.cloneNode(true);
    c.querySelectorAll('.cc-remote-caret').forEach((x) => x.remove());
    return c.textContent;
  });
  return lines.join('\n');
});

/** A query as the page's user. */
function gql(page, query, variables) {
  return page.evaluate(async ([query, variables]) => {
    const t = JSON.parse(localStorage.getItem('codecrafter.auth')).accessToken;
    const r = await fetch('/graphql', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${t}` },
      body: JSON.stringify({ query, variables }) });
    return (await r.json()).data;
  }, [query, variables]);
}

async function eventually(what, fn) {
  const deadline = Date.now() + T;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${T / 1000} s`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function serverCode(page, sessionId) {
  return (await gql(page, 'query($id: ID!) { session(id: $id) { code } }', { id: sessionId })).session.code;
}

async function converged(pages, sessionId, what) {
  const deadline = Date.now() + T;
  let texts;
  for (;;) {
    const code = await serverCode(pages[0], sessionId);
    texts = [code, ...(await Promise.all(pages.map(editorText)))];
    if (texts.every((t) => t === code)) return code;
    if (Date.now() > deadline) throw new Error(`${what}: editors and server differ: ${JSON.stringify(texts)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function signUp(page, base, name, email, path = '/') {
  await page.goto(base + path);
  await page.getByRole('link', { name: 'Sign up' }).click();
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Create account' }).click();
}

async function newContext(name) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 950 } });
  // Every WebSocket the page opens, so a test can reach them. While
  // window.__offline is set, new ones fail as they would off the network:
  // setOffline does not reach WebSockets in every Chromium (playwright#4910),
  // and a socket back within the client's first retry (150-300 ms) could
  // hide the "Reconnecting…" banner from a check on a loaded machine. A
  // socket marked __stalled neither sends nor receives, and stays open: a
  // dead link that the browser does not see.
  await ctx.addInitScript(() => {
    const WS = window.WebSocket;
    window.__sockets = [];
    window.__offline = false;
    window.__wslog = []; // what the sockets did, printed when a step about them fails
    const t0 = Date.now();
    window.WebSocket = class extends WS {
      constructor(url, ...a) {
        super(window.__offline ? `ws://${location.host}/offline` : url, ...a); // same origin: the CSP allows it, the server refuses it
        const n = window.__sockets.push(this);
        const note = (what) => window.__wslog.push(`${Date.now() - t0}ms #${n} ${what}`);
        note(`new ${this.url}`);
        this.addEventListener('open', () => note('open'));
        this.addEventListener('close', (e) => note(`close ${e.code}`));
      }
      send(data) {
        if (!this.__stalled) super.send(data);
      }
      set onmessage(f) { // the client's one handler
        super.onmessage = f && ((e) => { if (!this.__stalled) f.call(this, e); });
      }
      get onmessage() { return super.onmessage; }
    };
  });
  const page = await ctx.newPage();
  pages[name] = page;
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy|Refused to/i.test(m.text())) failures.push(`${name}: ${m.text()}`);
  });
  page.on('pageerror', (e) => failures.push(`${name}: page error: ${e.message}`));
  page.on('dialog', (d) => d.accept());
  return { ctx, page };
}

async function main() {
  server = await startServer(log);
  const { base } = server;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
  const stamp = Date.now();
  const ann = await newContext('ann');
  const bob = await newContext('bob');
  const A = ann.page, B = bob.page;

  log('sign up, create a session');
  await signUp(A, base, 'Ann', `ann-${stamp}@example.com`);
  await A.getByLabel('Title').fill('Pairing');
  await A.getByLabel('Language').selectOption('python');
  await A.getByRole('button', { name: 'New session' }).click();
  await A.waitForURL(/\/s\/[^/]+$/, { timeout: T });
  const sessionId = decodeURIComponent(new URL(A.url()).pathname.split('/').pop());
  const invite = await A.getByLabel('Invite link', { exact: true }).inputValue();
  if (!invite.includes('/join/')) throw new Error(`invite link: ${invite}`);

  log('second user joins by the invite link');
  await signUp(B, base, 'Bob', `bob-${stamp}@example.com`, new URL(invite).pathname);
  await B.waitForURL(new RegExp(`/s/${sessionId}$`), { timeout: T });
  for (const p of [A, B]) await p.getByRole('textbox', { name: 'Code' }).waitFor({ timeout: T });

  log('presence: each sees the other online');
  const onlineDot = (page, who) => page.getByRole('list', { name: 'Participants' }).getByRole('listitem').filter({ hasText: who }).getByRole('img', { name: 'online' });
  await onlineDot(A, 'Bob').waitFor({ timeout: T });
  await onlineDot(B, 'Ann').waitFor({ timeout: T });

  log('both type at once; editors and server converge');
  await A.getByRole('textbox', { name: 'Code' }).click();
  await A.keyboard.type('# 😀 shared\n');
  await converged([A, B], sessionId, 'first line');
  await B.getByRole('textbox', { name: 'Code' }).click();
  await B.keyboard.press('Control+End');
  await A.keyboard.press('Control+End');
  await Promise.all([
    A.keyboard.type("print('from ann 😀')\n", { delay: 15 }),
    (async () => { await B.keyboard.press('Control+Home'); await B.keyboard.type("print('from bob')\n", { delay: 15 }); })(),
  ]);
  const code = await converged([A, B], sessionId, 'typing at once');
  for (const want of ["print('from ann 😀')", "print('from bob')", '# 😀 shared']) {
    if (!code.includes(want)) throw new Error(`converged text lacks ${want}: ${JSON.stringify(code)}`);
  }

  log('fast typing stays within the socket message rate (no reconnect) and converges');
  const socketsBefore = await A.evaluate(() => window.__sockets.length);
  await A.keyboard.press('Control+End');
  await A.keyboard.type('# ' + 'fast typing '.repeat(40) + '\n', { delay: 2 });
  await converged([A, B], sessionId, 'fast typing');
  const socketsAfter = await A.evaluate(() => window.__sockets.length);
  if (socketsAfter !== socketsBefore) throw new Error(`fast typing reconnected: ${socketsBefore} sockets opened before, ${socketsAfter} after`);

  log("cursors: each sees the other's, with a name");
  await A.getByRole('textbox', { name: 'Code' }).click();
  await B.getByRole('textbox', { name: 'Code' }).click();
  await until(A, "Bob's cursor in Ann's editor", () => [...document.querySelectorAll('.cc-remote-name')].some((e) => e.textContent === 'Bob'));
  await until(B, "Ann's cursor in Bob's editor", () => [...document.querySelectorAll('.cc-remote-name')].some((e) => e.textContent === 'Ann'));
  // Where it is: Bob's cursor after "# 😀 sh" on line 2 shows there for Ann (an emoji is 2 UTF-16 units, 1 code point).
  await B.keyboard.press('Control+Home');
  await B.keyboard.press('ArrowDown');
  for (let i = 0; i < 6; i++) await B.keyboard.press('ArrowRight');
  await until(A, "Bob's cursor after '# 😀 sh'", () => {
    const caret = [...document.querySelectorAll('.cc-remote-caret')].find((e) => e.textContent === 'Bob');
    const line = caret?.closest('.cm-line');
    if (!line) return false;
    const r = document.createRange();
    r.setStart(line, 0);
    r.setEndBefore(caret);
    return r.toString() === '# 😀 sh';
  });

  log('chat both ways, with the typing indicator');
  await B.getByLabel('Message').fill('hi');
  await A.getByText('Bob is typing…').waitFor({ timeout: T });
  await B.getByLabel('Message').fill('hello Ann');
  await B.getByRole('button', { name: 'Send' }).click();
  await A.getByRole('list', { name: 'Chat history' }).getByText('hello Ann').waitFor({ timeout: T });
  await A.getByLabel('Message').fill('hello Bob');
  await A.getByRole('button', { name: 'Send' }).click();
  await B.getByRole('list', { name: 'Chat history' }).getByText('hello Bob').waitFor({ timeout: T });

  log('Run: the output streams to both');
  await A.getByRole('button', { name: 'Run', exact: true }).click();
  for (const p of [A, B]) {
    const out = p.getByRole('region', { name: 'Output' });
    await out.getByText('from ann 😀').waitFor({ timeout: T * 2 });
    await out.getByText('from bob').waitFor({ timeout: T });
    await out.getByText('SUCCEEDED').waitFor({ timeout: T });
    await out.getByText('exit code 0').waitFor({ timeout: T });
  }
  if (process.env.SCREENSHOTS) {
    mkdirSync(process.env.SCREENSHOTS, { recursive: true });
    await A.screenshot({ path: join(process.env.SCREENSHOTS, 'session-ann.png') });
    await B.screenshot({ path: join(process.env.SCREENSHOTS, 'session-bob.png') });
  }

  log("a viewer's Run is disabled and the editor read-only");
  await A.getByLabel('Role of Bob').selectOption('VIEWER');
  await until(B, 'Run disabled for the viewer', () => [...document.querySelectorAll('button')].find((b) => b.textContent === 'Run')?.disabled === true);
  await until(B, 'read-only editor', () => document.querySelector('.cm-content')?.getAttribute('contenteditable') === 'false');
  await A.getByLabel('Role of Bob').selectOption('EDITOR');
  await until(B, 'Run enabled again', () => [...document.querySelectorAll('button')].find((b) => b.textContent === 'Run')?.disabled === false);
  await until(B, 'editable again', () => document.querySelector('.cm-content')?.getAttribute('contenteditable') === 'true');

  const reconnecting = (what) => B.getByRole('status').getByText('Reconnecting…').waitFor({ timeout: T }).catch(async (e) => {
    const seen = await B.evaluate(() => ({ sockets: window.__wslog, banner: document.querySelector('.banner')?.textContent ?? null, at: location.href }));
    throw new Error(`${what}: ${e.message}\nBob's sockets: ${JSON.stringify(seen, null, 1)}`);
  });

  log("Bob's socket goes dead without closing: his page sees no pong, drops it, and his edit from meanwhile goes through");
  await B.evaluate(() => { window.__offline = true; window.__sockets.forEach((s) => { s.__stalled = true; }); });
  await B.getByRole('textbox', { name: 'Code' }).click();
  await B.keyboard.press('Control+End');
  await B.keyboard.type('# bob on a dead link\n');
  await reconnecting('a dead socket');
  await B.evaluate(() => { window.__offline = false; });
  await until(B, 'reconnected after a dead socket', () => !document.querySelector('.banner'));
  const relinked = await converged([A, B], sessionId, 'after a dead socket');
  if (!relinked.includes('# bob on a dead link')) throw new Error(`after a dead socket the text lacks Bob's edit: ${JSON.stringify(relinked)}`);

  log('Bob drops off the network: his page sees it at once, his edits wait, and he catches up on everything when back');
  await B.evaluate(() => { window.__offline = true; });
  await bob.ctx.setOffline(true);
  await reconnecting('offline');
  await A.getByLabel('Message').fill('while you were away');
  await A.getByRole('button', { name: 'Send' }).click();
  await A.getByRole('textbox', { name: 'Code' }).click();
  await A.keyboard.press('Control+End');
  await A.keyboard.type("print('ann offline')\n");
  await B.getByRole('textbox', { name: 'Code' }).click();
  await B.keyboard.press('Control+Home');
  await B.keyboard.type('# bob offline\n');
  await B.evaluate(() => { window.__offline = false; });
  await bob.ctx.setOffline(false);
  await until(B, 'reconnected', () => !document.querySelector('.banner'));
  await B.getByRole('list', { name: 'Chat history' }).getByText('while you were away').waitFor({ timeout: T });
  const resumed = await converged([A, B], sessionId, 'after the reconnect');
  for (const want of ["print('ann offline')", '# bob offline']) {
    if (!resumed.includes(want)) throw new Error(`after the reconnect the text lacks ${want}: ${JSON.stringify(resumed)}`);
  }
  const msgs = await B.getByRole('list', { name: 'Chat history' }).getByRole('listitem').allTextContents();
  const want = ['Bob hello Ann', 'Ann hello Bob', 'Ann while you were away'];
  if (JSON.stringify(msgs) !== JSON.stringify(want)) throw new Error(`Bob's messages after the reconnect: ${JSON.stringify(msgs)}, want ${JSON.stringify(want)}`);

  log('history: the slider shows the code as it was');
  await A.getByRole('button', { name: 'History' }).click();
  const slider = A.getByLabel('History position');
  await slider.waitFor({ timeout: T });
  const max = Number(await slider.getAttribute('max'));
  await slider.fill('0');
  await until(A, 'code at the start of the history', () => document.querySelector('[aria-label="Code at this point"]')?.textContent === '' ||
    !document.querySelector('[aria-label="Code at this point"]')?.textContent.includes('ann offline'));
  await slider.fill(String(max));
  await until(A, 'code at the end of the history', (c) => document.querySelector('[aria-label="Code at this point"]')?.textContent === c, resumed);
  const timeline = await A.getByRole('list', { name: 'Timeline' }).count();
  log(timeline ? 'history from the timeline' : 'history from revisions (no timeline on this server)');
  if (timeline) await A.getByRole('list', { name: 'Timeline' }).getByText('while you were away').waitFor({ timeout: T });
  if (process.env.SCREENSHOTS) {
    await slider.fill(String(Math.floor(max * 0.6)));
    await A.getByRole('region', { name: 'History' }).screenshot({ path: join(process.env.SCREENSHOTS, 'history.png') });
    await slider.fill(String(max));
  }

  log('the owner turns the invite link off, while a read of the session from before is on its way: it does not undo the change on screen');
  // Ann's page reads the session every 5 s: one read is answered now but
  // delivered only after the change has been answered.
  let holdOne = true, fulfilled = false, held, release, nextRead, looked;
  const holding = new Promise((r) => (held = r));
  const released = new Promise((r) => (release = r));
  const readAfter = new Promise((r) => (nextRead = r));
  const checked = new Promise((r) => (looked = r));
  await A.route('**/graphql', async (route) => {
    const body = route.request().postData() ?? '';
    if (!body.includes('session(id:') || !body.includes('participants')) return route.continue(); // the page's reads only
    if (fulfilled) {
      nextRead();
      await checked; // its answer would hide what the held one did
    }
    if (!holdOne) return route.continue();
    holdOne = false;
    held();
    const response = await route.fetch(); // the server reads it now
    await released;
    await route.fulfill({ response });
    fulfilled = true;
  });
  await holding;
  await A.getByRole('checkbox', { name: 'Invite link on' }).uncheck();
  // (the server's answer, not only the box: a newcomer next)
  await eventually('invite off', async () => (await gql(A, 'query($id: ID!) { session(id: $id) { inviteEnabled } }', { id: sessionId })).session.inviteEnabled === false);
  release();
  await readAfter; // the page's next read: the held one was delivered before it
  const on = await A.getByRole('checkbox', { name: 'Invite link on' }).isChecked();
  looked();
  if (on) throw new Error('a read from before the change turned the invite box on again');
  await A.unroute('**/graphql', { behavior: 'wait' }); // the reads it holds go on first
  const carl = await newContext('carl');
  await signUp(carl.page, base, 'Carl', `carl-${stamp}@example.com`, new URL(invite).pathname);
  await carl.page.getByRole('alert').getByText('Could not join').waitFor({ timeout: T });

  log('on again, Carl joins; the owner removes him and his page says so');
  await A.getByRole('checkbox', { name: 'Invite link on' }).check();
  await eventually('invite on', async () => (await gql(A, 'query($id: ID!) { session(id: $id) { inviteEnabled } }', { id: sessionId })).session.inviteEnabled === true);
  await carl.page.goto(invite);
  await carl.page.getByRole('textbox', { name: 'Code' }).waitFor({ timeout: T });
  await A.getByRole('button', { name: 'Remove Carl' }).click({ timeout: T }); // its confirm() is accepted
  await carl.page.getByRole('alert').getByText('You are no longer in this session.').waitFor({ timeout: T });
  await A.getByRole('list', { name: 'Participants' }).getByText('Carl').waitFor({ state: 'detached', timeout: T });

  log('fork from here: a new session of Ann with the code at that point');
  await A.getByRole('button', { name: 'Fork from here' }).click();
  await A.waitForURL((u) => u.pathname.startsWith('/s/') && !u.pathname.endsWith(sessionId), { timeout: T });
  await A.getByRole('textbox', { name: 'Code' }).waitFor({ timeout: T });
  const forked = await converged([A], decodeURIComponent(new URL(A.url()).pathname.split('/').pop()), 'the fork');
  if (forked !== resumed) throw new Error(`the fork has ${JSON.stringify(forked)}, want ${JSON.stringify(resumed)}`);

  log('a run behind another shows its place in the queue, then its output');
  await A.getByRole('textbox', { name: 'Code' }).click();
  await A.keyboard.press('Control+a');
  await A.keyboard.type("import time\ntime.sleep(3)\nprint('slept')\n");
  const sleeper = await converged([A], decodeURIComponent(new URL(A.url()).pathname.split('/').pop()), 'the sleeper');
  if (sleeper !== "import time\ntime.sleep(3)\nprint('slept')\n") throw new Error(`the editor has ${JSON.stringify(sleeper)}`);
  const run = A.getByRole('button', { name: 'Run', exact: true });
  await run.click();
  await run.click(); // while the first still waits or sleeps
  await A.getByRole('region', { name: 'Output' }).getByTestId('queue').waitFor({ timeout: T });
  await A.getByRole('region', { name: 'Output' }).getByText('slept').waitFor({ timeout: T * 2 });
  await A.getByRole('region', { name: 'Output' }).getByText('SUCCEEDED').waitFor({ timeout: T });

  if (failures.length) throw new Error(failures.join('\n'));
  log('PASS');
}

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  console.error('e2e FAILED:', e.message);
  if (failures.length) console.error(failures.join('\n'));
  const dir = mkdtempSync(join(tmpdir(), 'cc-e2e-failure-'));
  for (const [name, page] of Object.entries(pages)) await page.screenshot({ path: join(dir, `${name}.png`) }).catch(() => {});
  console.error('pages at the failure:', dir);
} finally {
  await browser?.close().catch(() => {});
  await server?.stop();
}
process.exit(code);
