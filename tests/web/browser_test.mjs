#!/usr/bin/env node
// Browser test of music_client's web page (issue 11), with real processes and a real browser.
//
// Starts a music_server (serving songs generated here) and two music_clients with --web on
// loopback, joins the second to the first, plays a song, then drives the first client's page in
// headless Debian Chromium (playwright-core with executablePath): the peer table shows the other
// client and updates, the sync plot is drawn and changes, a click on Pause pauses BOTH clients on
// the same frame (read from each client's /state), Resume plays both again. A third client with a
// group key checks that /state, /events and /command need the token it prints, and that the page
// asks for it. A screenshot of the page is saved for the README.
//
// Environment:
//   MUSIC262_BIN_DIR      where music_server and music_client are
//                         (default: $CARGO_TARGET_DIR/debug, or target/debug of the repository)
//   MUSIC262_SCREENSHOT   where the screenshot goes (default: target/test-logs/web-page.png)
//   MUSIC262_CHROMIUM     the browser (default: /usr/bin/chromium)
//   MUSIC262_KEEP=1       keep the work folder (process outputs and logs) even on success
//
// Prints one line per check ('ok ...' or 'FAIL ...' with what was expected and seen), then
// 'web: N passed, M failed'. Exits 0 when every check passed, 1 on the first failure, 2 when the
// set-up failed. Every process it starts is stopped before it exits, also on failure or Ctrl-C.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
const BIN_DIR = path.resolve(ROOT, process.env.MUSIC262_BIN_DIR || path.join(TARGET, 'debug'));
const SCREENSHOT = path.resolve(ROOT, process.env.MUSIC262_SCREENSHOT || path.join(TARGET, 'test-logs', 'web-page.png'));
const CHROMIUM = process.env.MUSIC262_CHROMIUM || '/usr/bin/chromium';
const GROUP_KEY = '0123456789abcdef0123';
const OVERALL_TIMEOUT_MS = 300_000;
const LONG_SONG = 'a-long-tone.wav';

// ------------------------------------------------------------------------------------------------
// Reporting

class Fail extends Error {}
class SetupError extends Error {}

let passed = 0;
function ok(name, detail) {
  passed++;
  console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
}
function expect(cond, name, expected, seen) {
  if (!cond) throw new Fail(`${name}: expected ${expected}; saw ${seen}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (v) => (typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v));

// Polls `probe` (async, returns a value or undefined/false) until it gives a truthy value.
// On time-out fails with `what` and the last value `describe` gives.
async function waitUntil(what, timeoutMs, probe, describe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      let seen;
      try {
        seen = describe ? await describe() : last ? last.message : 'nothing';
      } catch (e) {
        seen = `(could not read: ${e.message})`;
      }
      throw new Fail(`${what}: not within ${timeoutMs / 1000} s; saw ${seen}`);
    }
    await sleep(200);
  }
}

// ------------------------------------------------------------------------------------------------
// Songs, generated here: a long one (so that nothing ends during the test) and a short one

function writeWav(file, rate, seconds, notes) {
  const frames = rate * seconds;
  const data = Buffer.alloc(frames * 2);
  const noteLen = rate / 2;
  for (let i = 0; i < frames; i++) {
    const n = Math.floor(i / noteLen);
    const t = (i % noteLen) / rate;
    const f = notes[(n * 7 + (n >> 2)) % notes.length];
    const v = Math.sin(2 * Math.PI * f * t) * Math.exp(-4 * t) * 9000;
    data.writeInt16LE(Math.round(v), i * 2);
  }
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([h, data]));
}

// ------------------------------------------------------------------------------------------------
// Processes

const procs = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

class Proc {
  constructor(name, argv, work, env) {
    this.name = name;
    this.lines = [];
    this.waiters = new Set();
    this.exited = null;
    this.outPath = path.join(work, `${name}.out`);
    this.out = fs.createWriteStream(this.outPath);
    this.p = spawn(argv[0], argv.slice(1), {
      cwd: work,
      env: { ...process.env, ...(env || {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    procs.push(this);
    this.p.on('error', (e) => {
      this.exited = `could not start: ${e.message}`;
      this.wake();
    });
    this.p.on('exit', (code, sig) => {
      this.exited = sig ? `killed by ${sig}` : `exited with status ${code}`;
      this.wake();
    });
    this.p.stdin.on('error', () => {}); // a dead process's stdin: reported by waitFor instead
    for (const stream of [this.p.stdout, this.p.stderr]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          this.line(buf.slice(0, i).replace(/\r$/, ''));
          buf = buf.slice(i + 1);
        }
      });
      stream.on('end', () => {
        if (buf) this.line(buf);
        buf = '';
      });
    }
  }

  line(text) {
    this.lines.push(text);
    this.out.write(text + '\n');
    this.wake();
  }

  wake() {
    for (const w of this.waiters) w();
  }

  // The first match of `regex` in an output line from index `since` on.
  waitFor(regex, timeoutMs, since = 0) {
    return new Promise((resolve, reject) => {
      let i = since;
      const check = () => {
        for (; i < this.lines.length; i++) {
          const m = regex.exec(this.lines[i]);
          if (m) return done(null, m);
        }
        if (this.exited) return done(new SetupError(`${this.name} ${this.exited} before printing /${regex.source}/; last lines:\n${this.tail()}`));
        return undefined;
      };
      const timer = setTimeout(
        () => done(new SetupError(`${this.name}: no line matching /${regex.source}/ within ${timeoutMs / 1000} s; last lines:\n${this.tail()}`)),
        timeoutMs,
      );
      const done = (err, m) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve(m);
      };
      this.waiters.add(check);
      check();
    });
  }

  tail(n = 10) {
    return this.lines.slice(-n).map((l) => `      ${l}`).join('\n');
  }

  send(line) {
    this.p.stdin.write(line + '\n');
  }

  alive() {
    return this.exited === null && this.p.exitCode === null && this.p.signalCode === null;
  }

  async stop(graceMs = 3000) {
    if (this.alive()) {
      this.p.kill('SIGTERM');
      const deadline = Date.now() + graceMs;
      while (this.alive() && Date.now() < deadline) await sleep(50);
      if (this.alive()) {
        this.p.kill('SIGKILL');
        const d2 = Date.now() + 3000;
        while (this.alive() && Date.now() < d2) await sleep(50);
      }
    }
    try {
      this.p.stdin.end();
    } catch {
      /* already closed */
    }
    await new Promise((r) => this.out.end(r));
  }
}

// Last resort when this process is leaving anyway (uncaught error, signal): synchronous kills.
function killAllNow() {
  for (const p of procs) {
    if (p.alive()) {
      try {
        p.p.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
process.on('exit', killAllNow);

// ------------------------------------------------------------------------------------------------
// HTTP to a client's page

async function getState(client, token) {
  const url = `${client.web}/state${token ? `?token=${encodeURIComponent(token)}` : ''}`;
  const res = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

// A raw request, so that the Host header and every other header can be chosen.
function rawRequest(url, { method = 'GET', headers = {}, body = null, timeoutMs = 5000, readMs = null } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: { Connection: 'close', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        const finish = () => resolve({ status: res.statusCode, headers: res.headers, text });
        res.on('end', finish);
        if (readMs !== null) {
          // Event streams never end: take what came within readMs.
          setTimeout(() => {
            finish();
            req.destroy();
          }, readMs);
        }
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
    if (body !== null) req.end(body);
    else req.end();
  });
}

const jsonOf = (text) => {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
};

// ------------------------------------------------------------------------------------------------
// The test

async function startServer(work, audioDir) {
  const exe = path.join(BIN_DIR, 'music_server');
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const p = new Proc(`server${attempt ? `-${attempt}` : ''}`, [exe, '--port', String(port), '--bind', '127.0.0.1', '--audio-dir', audioDir, '--log-file', path.join(work, 'server.log')], work);
    try {
      await p.waitFor(new RegExp(`listening on 127\\.0\\.0\\.1:${port}`), 60_000);
      p.port = port;
      return p;
    } catch (e) {
      if (p.alive()) throw e;
      await p.stop();
    }
  }
  throw new SetupError('music_server did not start (5 tries with a free port)');
}

async function startClient(work, name, serverPort, env) {
  const exe = path.join(BIN_DIR, 'music_client');
  for (let attempt = 0; attempt < 5; attempt++) {
    const [p2p, web] = [await freePort(), await freePort()];
    const p = new Proc(attempt ? `${name}-${attempt}` : name, [
      exe, '--server', `127.0.0.1:${serverPort}`, '--p2p-port', String(p2p), '--bind', '127.0.0.1',
      '--sink', 'null', '--web', `127.0.0.1:${web}`, '--log-file', path.join(work, `${name}.log`),
    ], work, env);
    try {
      const m = await p.waitFor(/web page: (http:\/\/\S+)/, 60_000);
      p.url = m[1];
      const u = new URL(p.url);
      p.web = `${u.protocol}//${u.host}`;
      p.token = u.searchParams.get('token');
      // The port actually used (the client takes the next one if the one asked for is taken).
      p.p2p = Number((await p.waitFor(/peer endpoint on port (\d+)/, 30_000))[1]);
      return p;
    } catch (e) {
      if (p.alive()) throw e;
      await p.stop();
    }
  }
  throw new SetupError(`${name} did not start (5 tries with free ports)`);
}

async function main(ctx) {
  const { work } = ctx;
  for (const exe of ['music_server', 'music_client']) {
    try {
      fs.accessSync(path.join(BIN_DIR, exe), fs.constants.X_OK);
    } catch {
      throw new SetupError(`${exe} not found in ${BIN_DIR}; build it with: cargo build -p music262 --bins`);
    }
  }
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
  } catch {
    throw new SetupError(`${CHROMIUM} not found; install it with: apt-get install -y --no-install-recommends chromium`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new SetupError(`playwright-core is not installed (run: npm ci in ${HERE}): ${e.message}`);
  }

  const audioDir = path.join(work, 'audio');
  fs.mkdirSync(audioDir);
  writeWav(path.join(audioDir, LONG_SONG), 16000, 240, [523.25, 587.33, 659.25, 783.99, 880.0]);
  writeWav(path.join(audioDir, 'b-short-tune.wav'), 16000, 20, [440, 494, 554, 659]);

  // --- processes ---
  const server = await startServer(work, audioDir);
  const [a, b] = [await startClient(work, 'client-a', server.port), await startClient(work, 'client-b', server.port)];
  ok('start', `music_server on ${server.port}; client-a page ${a.url}, peer port ${a.p2p}; client-b page ${b.url}, peer port ${b.p2p}`);
  expect(!a.token && !b.token, 'no token without a group key', 'page addresses without ?token=', `${a.url}, ${b.url}`);

  b.send(`join 127.0.0.1:${a.p2p}`);
  const linked = async (c) => {
    const s = await getState(c);
    return s.peers.some((p) => p.node_id && !p.suspect) ? s : null;
  };
  const [sa, sb] = await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: a peer with a node id in /state after join`, 30_000, () => linked(c),
      async () => show((await getState(c)).peers))));
  a.node = sa.node_id;
  b.node = sb.node_id;
  expect(sa.peers.some((p) => p.node_id === b.node), 'client-a lists client-b', `a peer with node id ${b.node}`, show(sa.peers));
  ok('join', `client-a ${a.node} and client-b ${b.node} see each other in /state`);

  // --- play a song from client-a's prompt ---
  const pl = await waitUntil('client-a: the playlist in /state', 30_000,
    async () => ((await getState(a)).playlist.length ? (await getState(a)).playlist : null),
    async () => show((await getState(a)).playlist));
  const entry = pl.find((e) => e.name === LONG_SONG);
  expect(entry && entry.index === 1, 'playlist', `${LONG_SONG} at index 1`, show(pl));
  a.send('play 1');
  await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: state "playing" ${LONG_SONG} after "play 1"`, 45_000,
      async () => {
        const s = await getState(c);
        return s.state === 'playing' && s.song && s.song.name === LONG_SONG;
      },
      async () => { const s = await getState(c); return `state ${show(s.state)}, song ${show(s.song)}, loading ${show(s.loading)}`; })));
  ok('play', `both clients playing ${LONG_SONG}`);

  // --- the browser ---
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'music262-chromium-'));
  ctx.userData = userData;
  const browser = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'dark',
    timeout: 60_000,
    // This script stops the browser itself on a signal (and reports it).
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  ctx.browser = browser;
  const page = browser.pages()[0] || (await browser.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  page.setDefaultTimeout(15_000);

  await page.goto(a.url, { waitUntil: 'load' });
  await waitUntil('page: connection indicator "open" (EventSource connected)', 15_000,
    async () => (await page.getAttribute('#conn', 'data-state')) === 'open',
    async () => `data-state ${show(await page.getAttribute('#conn', 'data-state'))}, text ${show((await page.textContent('#conn')).trim())}`);
  ok('page loads', `${a.url}, live updates connected`);

  await waitUntil(`page: #state "playing" and #song "${LONG_SONG}"`, 10_000,
    async () => (await page.textContent('#state')) === 'playing' && (await page.textContent('#song')) === LONG_SONG,
    async () => `#state ${show(await page.textContent('#state'))}, #song ${show(await page.textContent('#song'))}`);
  const pos1 = await page.textContent('#position');
  await sleep(1500);
  const pos2 = await page.textContent('#position');
  expect(/^\d+:\d\d \/ 4:00$/.test(pos1) && pos1 !== pos2, 'page: position advances', `"m:ss / 4:00" changing over 1.5 s`, `${show(pos1)} then ${show(pos2)}`);
  const rows = await page.locator('#playlist tbody tr').count();
  expect(rows === 2 && (await page.locator('#play-1').count()) === 1, 'page: playlist', '2 rows with a play button each', `${rows} rows`);
  ok('page shows the song', `#state playing, #position ${show(pos1)} then ${show(pos2)}, playlist of ${rows}`);

  // Peer table: the other client, and its row updates.
  const peerRow = page.locator(`#peers tbody tr[data-node="${b.node}"]`);
  await waitUntil(`page: a row for client-b (${b.node}) in #peers`, 10_000, async () => (await peerRow.count()) === 1,
    async () => show(await page.locator('#peers tbody tr').allInnerTexts()));
  const rowText = async () => (await peerRow.innerText()).replace(/\s+/g, ' ').trim();
  const cells = async () => ({
    contact: await peerRow.locator('[data-col="contact"]').innerText(),
    rtt: await peerRow.locator('[data-col="rtt"]').innerText(),
    offset: await peerRow.locator('[data-col="offset"]').innerText(),
  });
  const first = await rowText();
  expect(first.includes(b.node) && first.includes('127.0.0.1:'), 'page: client-b\'s row',
    `its address and node id ${b.node}`, show(first));
  const c1 = await cells();
  expect(/ms$/.test(c1.rtt), 'page: client-b\'s RTT cell', 'a round-trip time in ms', show(c1.rtt));
  const c2 = await waitUntil('page: client-b\'s row updates (last contact, RTT or offset changes)', 10_000,
    async () => { const c = await cells(); return (c.contact !== c1.contact || c.rtt !== c1.rtt || c.offset !== c1.offset) ? c : null; },
    async () => `first ${show(c1)}, now ${show(await cells())}`);
  ok('peer table', `row ${show(first)}; cells ${show(c1)} then ${show(c2)}`);

  // The plot: drawn (pixels of both series' colours) and changing.
  await waitUntil('client-a: /state history with at least 3 sync error points', 20_000,
    async () => (await getState(a)).history.filter((h) => h.error_us !== null).length >= 3,
    async () => { const h = (await getState(a)).history; return `${h.length} points, last ${show(h.slice(-3))}`; });
  const plotInfo = () => page.evaluate(() => {
    const c = document.getElementById('plot');
    const g = c.getContext('2d');
    const css = getComputedStyle(document.documentElement);
    const rgb = (name) => {
      const probe = document.createElement('canvas').getContext('2d');
      probe.fillStyle = css.getPropertyValue(name).trim();
      probe.fillRect(0, 0, 1, 1);
      return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
    };
    const want = { error: rgb('--accent'), rate: rgb('--accent2') };
    const px = g.getImageData(0, 0, c.width, c.height).data;
    const count = { error: 0, rate: 0 };
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] < 200) continue;
      for (const k of ['error', 'rate']) {
        const w = want[k];
        if (Math.abs(px[i] - w[0]) < 30 && Math.abs(px[i + 1] - w[1]) < 30 && Math.abs(px[i + 2] - w[2]) < 30) count[k]++;
      }
    }
    return { url: c.toDataURL(), width: c.width, height: c.height, count };
  });
  const p1 = await waitUntil('page: #plot draws both series (sync error and rate correction)', 15_000,
    async () => { const p = await plotInfo(); return p.count.error > 30 && p.count.rate > 30 ? p : null; },
    async () => { const p = await plotInfo(); return `${p.width}x${p.height}, pixels of the error series ${p.count.error}, of the rate series ${p.count.rate}`; });
  const p2 = await waitUntil('page: #plot changes over time', 15_000,
    async () => { const p = await plotInfo(); return p.url !== p1.url ? p : null; },
    async () => 'the same image');
  // The stream sends only new points after its first event: the page must have added them up
  // to the history the client holds (a point or two behind at most, between pushes).
  const held = async () => {
    const onPage = Number(await page.evaluate(() => document.getElementById('plot').dataset.points));
    return { onPage, inClient: (await getState(a)).history.length };
  };
  const h = await waitUntil('page: #plot holds the whole history that client-a holds', 10_000,
    async () => { const x = await held(); return x.onPage >= 10 && Math.abs(x.onPage - x.inClient) <= 2 ? x : null; },
    async () => show(await held()));
  ok('plot', `${p1.width}x${p1.height} canvas; series pixels error ${p1.count.error}, rate ${p1.count.rate}; then changed (error ${p2.count.error}, rate ${p2.count.rate}); ${h.onPage} points on the page, ${h.inClient} in the client`);

  // --- pause from the page: both clients on the same frame ---
  await page.click('#btn-pause');
  const resultOf = async () => ({ ok: await page.getAttribute('#result', 'data-ok'), text: await page.textContent('#result') });
  const r = await waitUntil('page: the result of "pause"', 10_000,
    async () => { const x = await resultOf(); return x.ok === 'true' || x.ok === 'false' ? x : null; },
    async () => show(await resultOf()));
  expect(r.ok === 'true', 'page: "pause" accepted', 'data-ok "true"', show(r));
  const paused = await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: state "paused" after the click on Pause`, 10_000,
      async () => { const s = await getState(c); return s.state === 'paused' ? s : null; },
      async () => { const s = await getState(c); return `state ${show(s.state)}, frame ${s.frame}`; })));
  // Both paused: the frame each reports must stay put and be the same.
  await sleep(500);
  const [fa, fb] = await Promise.all([getState(a), getState(b)]);
  expect(fa.state === 'paused' && fb.state === 'paused', 'both still paused', 'paused, paused', `${fa.state}, ${fb.state}`);
  expect(fa.frame === paused[0].frame && fb.frame === paused[1].frame, 'paused frames stay put',
    `client-a ${paused[0].frame}, client-b ${paused[1].frame} half a second later too`, `client-a ${fa.frame}, client-b ${fb.frame}`);
  expect(fa.frame === fb.frame, 'pause on the same frame', `client-a's frame == client-b's frame`, `client-a ${fa.frame}, client-b ${fb.frame} (difference ${fa.frame - fb.frame})`);
  expect(fa.frame > 0, 'pause frame', 'a frame after the start of the song', fa.frame);
  await waitUntil('page: #state "paused"', 5_000, async () => (await page.textContent('#state')) === 'paused',
    async () => show(await page.textContent('#state')));
  ok('pause from the page', `both clients paused on frame ${fa.frame} (${(fa.position_ms / 1000).toFixed(3)} s); page says ${show(r.text.replace(/\n/g, ' | '))}`);

  // --- resume ---
  await page.click('#btn-resume');
  await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: state "playing" after the click on Resume`, 10_000,
      async () => (await getState(c)).state === 'playing',
      async () => show((await getState(c)).state))));
  await waitUntil('page: #state "playing"', 5_000, async () => (await page.textContent('#state')) === 'playing',
    async () => show(await page.textContent('#state')));
  ok('resume from the page', 'both clients playing');

  // --- seek: a click in the middle of the progress bar seeks the group to about 2:00 ---
  const box = await page.locator('#progress').boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  const rs = await waitUntil('page: the result of the seek', 10_000,
    async () => { const x = await resultOf(); return /seek/.test(x.text) && (x.ok === 'true' || x.ok === 'false') ? x : null; },
    async () => show(await resultOf()));
  expect(rs.ok === 'true' && /^> seek 1[12]\d(\.\d)?\n/.test(rs.text), 'page: seek by a click on the bar',
    '"> seek 1xx.x" (about half of 4:00) accepted', show(rs));
  const target = Number(/^> seek (\S+)/.exec(rs.text)[1]) * 1000;
  await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: playing near ${target / 1000} s after the seek`, 10_000,
      async () => { const s = await getState(c); return s.state === 'playing' && s.position_ms >= target - 500 && s.position_ms <= target + 5000; },
      async () => { const s = await getState(c); return `state ${show(s.state)}, position ${s.position_ms} ms`; })));
  ok('seek from the page', `${show(rs.text.split('\n')[0])}: both clients playing from there`);

  // --- device latency: this client only ---
  await page.fill('#latency', '40');
  await page.click('#btn-latency');
  const rl = await waitUntil('page: the result of "latency 40"', 10_000,
    async () => { const x = await resultOf(); return /latency/.test(x.text) && (x.ok === 'true' || x.ok === 'false') ? x : null; },
    async () => show(await resultOf()));
  expect(rl.ok === 'true', 'page: "latency 40" accepted', 'data-ok "true"', show(rl));
  await waitUntil('client-a: latency_ms 40 in /state, and the page shows it', 10_000,
    async () => (await getState(a)).latency_ms === 40 && (await page.textContent('#latency-current')) === '40 ms',
    async () => `latency_ms ${(await getState(a)).latency_ms}, page ${show(await page.textContent('#latency-current'))}`);
  ok('device latency from the page', `client-a latency_ms 40; page says ${show(rl.text.replace(/\n/g, ' | '))}`);

  // Screenshot for the README, with more of the plot (and the pointer off the progress bar).
  await page.mouse.move(5, 5);
  await sleep(8000);
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  // And at a phone's width: one column, nothing wider than the screen (wide tables scroll inside
  // their own box).
  const phoneShot = SCREENSHOT.replace(/(\.png)?$/, '-phone.png');
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(500);
  const fit = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: window.innerWidth }));
  expect(fit.doc <= fit.view, 'page at a phone\'s width', 'no horizontal scrolling of the page (scrollWidth <= 390)', `scrollWidth ${fit.doc}, width ${fit.view}`);
  await page.screenshot({ path: phoneShot, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  ok('screenshots', `${SCREENSHOT}, ${phoneShot} (390 px wide, fits)`);

  // --- a play button of the playlist, then Stop ---
  await page.click('#play-2');
  await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: playing b-short-tune.wav after the click on its play button`, 30_000,
      async () => { const s = await getState(c); return s.state === 'playing' && s.song && s.song.name === 'b-short-tune.wav'; },
      async () => { const s = await getState(c); return `state ${show(s.state)}, song ${show(s.song && s.song.name)}`; })));
  await page.click('#btn-stop');
  await Promise.all([a, b].map((c) =>
    waitUntil(`${c.name}: state "stopped" after the click on Stop`, 10_000,
      async () => (await getState(c)).state === 'stopped',
      async () => show((await getState(c)).state))));
  ok('play button and stop from the page', 'both clients played song 2, then both stopped');

  // --- loopback guard: another Host name is refused ---
  const evil = await rawRequest(`${a.web}/state`, { headers: { Host: 'music262.example:80' } });
  expect(evil.status === 403, 'Host check', 'HTTP 403 for Host: music262.example', `HTTP ${evil.status} ${evil.text.slice(0, 120)}`);
  ok('host check', `/state with Host: music262.example answers ${evil.status}`);

  // --- a client with a group key: the token ---
  const c = await startClient(work, 'client-keyed', server.port, { MUSIC262_GROUP_KEY: GROUP_KEY });
  expect(!!c.token, 'keyed client prints its token', 'web page: http://ADDR/?token=TOKEN', show(c.url));
  for (const [what, url] of [['no token', `${c.web}/state`], ['a wrong token', `${c.web}/state?token=wrong${c.token.slice(5)}`]]) {
    const res = await rawRequest(url);
    const body = jsonOf(res.text);
    expect(res.status === 401 && body && body.ok === false && typeof body.error === 'string', `keyed /state with ${what}`,
      'HTTP 401 {"ok":false,"error":...}', `HTTP ${res.status} ${res.text.slice(0, 160)}`);
  }
  const ev = await rawRequest(`${c.web}/events`, { readMs: 1000 });
  expect(ev.status === 401, 'keyed /events without a token', 'HTTP 401', `HTTP ${ev.status}`);
  const cmdNoToken = await rawRequest(`${c.web}/command`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"line":"status"}' });
  expect(cmdNoToken.status === 401, 'keyed /command without a token', 'HTTP 401', `HTTP ${cmdNoToken.status} ${cmdNoToken.text.slice(0, 160)}`);
  const withToken = await rawRequest(`${c.web}/state?token=${encodeURIComponent(c.token)}`);
  const snap = jsonOf(withToken.text);
  expect(withToken.status === 200 && snap && typeof snap.node_id === 'string' && Array.isArray(snap.history), 'keyed /state with the printed token',
    'HTTP 200 and a snapshot', `HTTP ${withToken.status} ${withToken.text.slice(0, 160)}`);
  const cmd = await rawRequest(`${c.web}/command`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${c.token}` }, body: '{"line":"status"}',
  });
  const cmdBody = jsonOf(cmd.text);
  expect(cmd.status === 200 && cmdBody && cmdBody.ok === true && typeof cmdBody.output === 'string', 'keyed /command with the token as Bearer',
    'HTTP 200 {"ok":true,"output":...}', `HTTP ${cmd.status} ${cmd.text.slice(0, 160)}`);
  ok('token over HTTP', '401 without or with a wrong token on /state, /events and /command; 200 with the printed one');

  // The page without the token asks for it; with ?token= it connects and drops it from the address.
  const page2 = await browser.newPage();
  page2.on('pageerror', (e) => pageErrors.push(e.message));
  await page2.goto(`${c.web}/`, { waitUntil: 'load' });
  await waitUntil('keyed page without a token: the token field', 10_000, () => page2.isVisible('#token-panel'),
    async () => `#conn ${show(await page2.getAttribute('#conn', 'data-state'))}`);
  const hint = await page2.textContent('#token-panel');
  expect(hint.includes('the token music_client printed at start'), 'token hint', '"the token music_client printed at start"', show(hint.trim()));
  await page2.fill('#token', c.token);
  await page2.click('#btn-token');
  await waitUntil('keyed page: live after entering the token', 10_000,
    async () => (await page2.getAttribute('#conn', 'data-state')) === 'open' && !(await page2.isVisible('#token-panel')),
    async () => `#conn ${show(await page2.getAttribute('#conn', 'data-state'))}, token field visible ${await page2.isVisible('#token-panel')}`);
  await page2.close();
  const page3 = await browser.newPage();
  await page3.goto(c.url, { waitUntil: 'load' });
  await waitUntil('keyed page opened with ?token=: live', 10_000,
    async () => (await page3.getAttribute('#conn', 'data-state')) === 'open',
    async () => `#conn ${show(await page3.getAttribute('#conn', 'data-state'))}`);
  const r3 = await page3.evaluate(async () => {
    const res = await fetch('/command', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + sessionStorage.getItem('music262.token') }, body: JSON.stringify({ line: 'status' }) });
    return { status: res.status, url: location.href };
  });
  expect(r3.status === 200 && !r3.url.includes('token='), 'keyed page with ?token=', 'commands accepted and the token gone from the address bar', show(r3));
  await page3.close();
  ok('token in the page', 'asks for it (with the hint) without one, works after entering it, and when opened with ?token=');

  expect(pageErrors.length === 0, 'no script errors on the page', 'none', show(pageErrors));
  ok('no script errors on the page');
}

async function cleanup(ctx) {
  if (ctx.browser) {
    await Promise.race([ctx.browser.close().catch(() => {}), sleep(10_000)]);
  }
  await Promise.all(procs.map((p) => p.stop()));
  if (ctx.userData) fs.rmSync(ctx.userData, { recursive: true, force: true });
}

const ctx = { work: fs.mkdtempSync(path.join(os.tmpdir(), 'music262-web-')) };
let exiting = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    if (exiting) return;
    exiting = true;
    console.log(`interrupted (${sig}): stopping everything this test started`);
    await Promise.race([cleanup(ctx), sleep(8000)]);
    killAllNow();
    console.log(`web: ${passed} passed, 1 failed (interrupted); outputs in ${ctx.work}`);
    process.exit(130);
  });
}
const watchdog = setTimeout(async () => {
  if (exiting) return;
  exiting = true;
  console.log(`FAIL the whole test: not done within ${OVERALL_TIMEOUT_MS / 1000} s`);
  await Promise.race([cleanup(ctx), sleep(8000)]);
  killAllNow();
  console.log(`web: ${passed} passed, 1 failed; outputs in ${ctx.work}`);
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

let status = 0;
console.log(`browser test of the web page: binaries in ${BIN_DIR}, browser ${CHROMIUM}, work folder ${ctx.work}`);
try {
  await main(ctx);
} catch (e) {
  status = e instanceof Fail ? 1 : 2;
  const text = e instanceof Fail || e instanceof SetupError ? e.message : (e && e.stack) || String(e);
  console.log(`FAIL ${text}`);
  for (const p of procs) console.log(`  last lines of ${p.name} (${p.outPath}):\n${p.tail(6)}`);
} finally {
  if (!exiting) {
    await cleanup(ctx);
    clearTimeout(watchdog);
  }
}
if (!exiting) {
  if (status === 0 && !process.env.MUSIC262_KEEP) fs.rmSync(ctx.work, { recursive: true, force: true });
  else console.log(`outputs and logs kept in ${ctx.work}`);
  console.log(`web: ${passed} passed, ${status === 0 ? 0 : 1} failed`);
  process.exit(status);
}
