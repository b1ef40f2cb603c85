#!/usr/bin/env node
// Load generator for the real-time path (issue 9): C Socket.IO clients in parties of 8, each
// sending party:update at 1 Hz (+-10% jitter) on a FIXED schedule. Latency is counted from the
// scheduled send time, so a generator that stalls cannot hide server delay (it shows up as
// latency, and the generator's own lag is reported separately).
//
// It reports, over the measured window only (after the warm-up): updates sent, deliveries
// expected/received, delivery latency p50/p95/p99/max, server CPU and RSS (all server processes
// and their descendants, from /proc/<pid>/stat), deliveries per server CPU-second, its own CPU,
// and the host's steal time (/proc/stat). One JSON object on stdout; progress on stderr.
//
//   node bench/loadgen.js --target peer --urls http://127.0.0.1:5100 --clients 1000 \
//        --duration 30 --warmup 10 --server-pids 1234
//
// --target ours: users are registered over REST (POST /api/v1/auth/register; run the server with
// RATELIMIT_ENABLED=0) and connect with auth {token}; --target peer: auth {user}.
// --stamp FIELD: top-level field carrying the scheduled send time (ms, this process's monotonic
// clock); the server must echo it in the broadcast. --stamp heading: no extra field; a per-sender
// sequence number rides in `heading` (seq % 360) and is looked up locally (for a server that
// rejects unknown fields and echoes heading).
"use strict";

const fs = require("fs");
const os = require("os");
const { performance } = require("perf_hooks");
const { io } = require("socket.io-client");

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const opts = {
    target: "peer",
    urls: "http://127.0.0.1:5100",
    clients: 250,
    partySize: 8,
    duration: 30,
    warmup: 10,
    drain: 3,
    rate: 1.0,
    jitter: 0.1,
    stamp: "t",
    serverPids: "",
    auxPids: "",
    placement: "party",
    connectConcurrency: 50,
    registerConcurrency: 8,
    password: "bench-password-1",
    runId: `${Date.now().toString(36)}${process.pid}`,
    transport: "websocket",
    deflate: "on", // "off": do not offer permessage-deflate (socket.io-client offers it by default)
    batch: "off", // "on" (--target ours): every client opts into party:updates (party:batch {enabled: true})
    setupTimeout: 600,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in opts)) throw new Error(`unknown option ${a}`);
    const v = argv[++i];
    opts[key] = typeof opts[key] === "number" ? Number(v) : v;
  }
  opts.urls = opts.urls.split(",").filter(Boolean);
  opts.serverPids = String(opts.serverPids).split(",").filter(Boolean).map(Number);
  opts.auxPids = String(opts.auxPids).split(",").filter(Boolean).map(Number); // e.g. redis-server: reported apart
  return opts;
}

const opts = parseArgs(process.argv);
const log = (...a) => process.stderr.write(`[loadgen ${new Date().toISOString().slice(11, 19)}] ${a.join(" ")}\n`);
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- /proc sampling
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64
const PAGE = 4096;

function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = s.slice(s.lastIndexOf(")") + 2).split(" ");
    // rest[0] is field 3 (state): utime=14, stime=15, rss=24 (1-based) -> 11, 12, 21
    const user = Number(rest[11]) / CLK_TCK, sys = Number(rest[12]) / CLK_TCK;
    return { ppid: Number(rest[1]), cpu: user + sys, user, sys, rss: Number(rest[21]) * PAGE };
  } catch (e) {
    return null;
  }
}

// The given pids and all their descendants (a server may fork workers).
function serverTree(roots) {
  if (!roots.length) return [];
  const children = new Map();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(name);
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push(Number(name));
  }
  const out = [];
  const stack = [...roots];
  while (stack.length) {
    const p = stack.pop();
    out.push(p);
    for (const c of children.get(p) || []) stack.push(c);
  }
  return out;
}

function sampleServers(pids) {
  let cpu = 0, user = 0, sys = 0, rss = 0, alive = 0;
  const per = {};
  for (const p of pids) {
    const st = readStat(p);
    if (!st) continue;
    alive++;
    cpu += st.cpu;
    user += st.user;
    sys += st.sys;
    rss += st.rss;
    per[p] = st.cpu;
  }
  return { cpu, user, sys, rss, alive, per };
}

function readProcStat() {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line;
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { total, steal, idle: idle + iowait };
}

function loadavg() {
  return fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
}

// ---------------------------------------------------------------- stats helpers
function percentile(sorted, p) {
  if (!sorted.length) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

class Samples {
  constructor() { this.buf = new Float64Array(1 << 16); this.n = 0; }
  push(v) {
    if (this.n === this.buf.length) { const b = new Float64Array(this.buf.length * 2); b.set(this.buf); this.buf = b; }
    this.buf[this.n++] = v;
  }
  summary() {
    const s = this.buf.slice(0, this.n).sort();
    const r = (x) => (x === null ? null : Math.round(x * 10) / 10);
    return { n: this.n, p50: r(percentile(s, 50)), p95: r(percentile(s, 95)), p99: r(percentile(s, 99)), max: r(s.length ? s[s.length - 1] : null) };
  }
}

async function pool(items, concurrency, fn) {
  let i = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (i < items.length) { const k = i++; await fn(items[k], k); }
  });
  await Promise.all(workers);
}

// ---------------------------------------------------------------- setup
function urlFor(idx) {
  const party = Math.floor(idx / opts.partySize), member = idx % opts.partySize;
  const n = opts.urls.length;
  // party: all members of a party on one process (parties round-robin over processes);
  // spread: members round-robin, so most deliveries cross processes.
  return opts.placement === "spread" ? opts.urls[(party + member) % n] : opts.urls[party % n];
}

async function register(c) {
  const email = `bench-${opts.runId}-${c.idx}@example.com`;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const res = await fetch(`${c.url}/api/v1/auth/register`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email, password: opts.password, display_name: `Bench ${c.idx}` }),
      });
      const body = await res.json();
      if (res.status === 201) { c.token = body.data.access_token; c.userId = body.data.user.id; return; }
      throw new Error(`register ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
    } catch (e) {
      if (attempt === 4) throw e;
      await sleep(200 * (attempt + 1));
    }
  }
}

function connect(c) {
  return new Promise((resolve, reject) => {
    const auth = opts.target === "ours" ? { token: c.token } : { user: c.userId };
    const o = { transports: [opts.transport], auth, reconnection: false, timeout: 30000, forceNew: true };
    if (opts.deflate === "off") o.perMessageDeflate = false;
    const sock = io(c.url, o);
    c.sock = sock;
    sock.once("connect", () => resolve());
    sock.once("connect_error", (e) => reject(new Error(`connect_error ${c.url}: ${e.message}`)));
  });
}

function emitAck(sock, event, payload, timeoutMs = 30000) {
  return new Promise((resolve) => {
    sock.timeout(timeoutMs).emit(event, payload, (err, ack) => resolve(err ? { ok: false, error: { code: "ack_timeout" } } : ack));
  });
}

// ---------------------------------------------------------------- main
async function main() {
  const C = opts.clients;
  const clients = Array.from({ length: C }, (_, idx) => ({ idx, party: Math.floor(idx / opts.partySize), member: idx % opts.partySize, url: urlFor(idx), userId: `u${idx}`, sendLog: [] }));
  const tSetup = now();
  const setupDeadline = tSetup + opts.setupTimeout * 1000;
  const errors = { register: 0, connect: 0, party: 0, ack_error: 0, ack_codes: {}, disconnects: 0, examples: [] };
  const noteErr = (kind, msg) => { if (errors.examples.length < 8) errors.examples.push(`${kind}: ${msg}`); };

  if (opts.target === "ours") {
    log(`registering ${C} users over REST on ${opts.urls.join(",")}`);
    await pool(clients, opts.registerConcurrency, async (c) => {
      try { await register(c); } catch (e) { errors.register++; noteErr("register", e.message); c.failed = true; }
    });
    log(`registered in ${((now() - tSetup) / 1000).toFixed(1)} s (${errors.register} failed)`);
  }
  const tConn = now();
  await pool(clients.filter((c) => !c.failed), opts.connectConcurrency, async (c) => {
    if (now() > setupDeadline) { c.failed = true; errors.connect++; return; }
    try { await connect(c); } catch (e) { errors.connect++; noteErr("connect", e.message); c.failed = true; }
  });
  log(`connected ${C - errors.connect - errors.register}/${C} in ${((now() - tConn) / 1000).toFixed(1)} s`);

  // Parties: member 0 creates, the others join with the invite code.
  const parties = new Map();
  let batchIntervalMs = null;
  for (const c of clients) { if (!parties.has(c.party)) parties.set(c.party, []); parties.get(c.party).push(c); }
  await pool([...parties.values()], opts.connectConcurrency, async (members) => {
    const leader = members[0];
    if (leader.failed) { members.forEach((m) => (m.failed = true)); errors.party += members.length; return; }
    const ack = await emitAck(leader.sock, "party:create", { name: `bench party ${leader.party}` });
    if (!ack || !ack.ok) { errors.party += members.length; noteErr("party:create", JSON.stringify(ack).slice(0, 200)); members.forEach((m) => (m.failed = true)); return; }
    const party = ack.party || ack.data || ack;
    for (const m of members) m.partyId = party.id;
    for (const m of members.slice(1)) {
      if (m.failed) continue;
      const j = await emitAck(m.sock, "party:join", { invite_code: party.invite_code });
      if (!j || !j.ok) { errors.party++; m.failed = true; noteErr("party:join", JSON.stringify(j).slice(0, 200)); }
    }
  });
  if (opts.batch === "on") {
    await pool(clients.filter((c) => !c.failed), opts.connectConcurrency, async (c) => {
      const ack = await emitAck(c.sock, "party:batch", { enabled: true });
      if (!ack || !ack.ok) { errors.party++; c.failed = true; noteErr("party:batch", JSON.stringify(ack).slice(0, 200)); }
      else batchIntervalMs = ack.interval_ms;
    });
  }
  const active = clients.filter((c) => !c.failed);
  log(`parties ready: ${parties.size} parties, ${active.length} active clients, setup ${((now() - tSetup) / 1000).toFixed(1)} s`);

  // Membership after setup: expected receivers per sender = active members of its party - 1.
  const activeByParty = new Map();
  for (const c of active) activeByParty.set(c.party, (activeByParty.get(c.party) || 0) + 1);
  const byUser = new Map(active.map((c) => [String(c.userId), c]));

  // Schedule.
  const t0 = now() + 1000;
  const winStart = t0 + opts.warmup * 1000;
  const winEnd = winStart + opts.duration * 1000;
  const period = 1000 / opts.rate;

  const lat = new Samples(), genLag = new Samples(), ackLat = new Samples();
  let batchesReceived = 0;
  let sentWin = 0, expectedWin = 0, receivedWin = 0, receivedTotal = 0, arrivedWin = 0, unmatched = 0, payloadBytes = 0, sentTotal = 0;
  const disconnected = new Set();

  for (const c of active) {
    c.sock.on("disconnect", (reason) => { errors.disconnects++; disconnected.add(c.idx); noteErr("disconnect", reason); });
    const onUpdate = (msg, tr) => {
      let ts;
      if (opts.stamp === "heading") {
        const sender = byUser.get(String(msg.user_id));
        if (!sender || typeof msg.heading !== "number") { unmatched++; return; }
        const h = Math.round(msg.heading) % 360, logArr = sender.sendLog;
        let k = logArr.length - 1;
        while (k >= 0 && k % 360 !== h) k--;
        if (k < 0) { unmatched++; return; }
        ts = logArr[k];
      } else {
        ts = msg[opts.stamp];
        if (typeof ts !== "number") { unmatched++; return; }
      }
      receivedTotal++;
      if (tr >= winStart && tr < winEnd) arrivedWin++; // throughput, whenever the update was sent
      if (ts >= winStart && ts < winEnd) { receivedWin++; lat.push(tr - ts); }
    };
    c.sock.on("party:update", (msg) => onUpdate(msg, now()));
    c.sock.on("party:updates", (msg) => {
      const tr = now();
      if (!msg || !Array.isArray(msg.updates)) { unmatched++; return; }
      batchesReceived++;
      for (const u of msg.updates) onUpdate(u, tr);
    });
  }

  function schedule(c, at) {
    c.timer = setTimeout(() => fire(c, at), Math.max(0, at - now()));
  }
  function fire(c, at) {
    if (at >= winEnd) return;
    const fired = now();
    if (at >= winStart) genLag.push(fired - at);
    const seq = c.sendLog.length;
    c.sendLog.push(at);
    const payload = {
      party_id: c.partyId,
      location: { lat: 48.85 + (c.party % 100) * 1e-3 + Math.random() * 1e-4, lng: 2.35 + (c.member % 8) * 1e-4 + Math.random() * 1e-4 },
      speed_kmh: Math.round(300 + Math.random() * 400) / 10,
      heading: opts.stamp === "heading" ? seq % 360 : Math.round(Math.random() * 3600) / 10,
      status: "riding",
    };
    if (opts.stamp !== "heading") payload[opts.stamp] = at;
    if (!payloadBytes) payloadBytes = Buffer.byteLength(JSON.stringify(payload));
    sentTotal++;
    const inWin = at >= winStart;
    if (inWin) { sentWin++; expectedWin += activeByParty.get(c.party) - 1; }
    c.sock.emit("party:update", payload, (ack) => {
      if (inWin) ackLat.push(now() - at);
      if (!ack || !ack.ok) {
        errors.ack_error++;
        const code = (ack && ack.error && ack.error.code) || "no_ack";
        errors.ack_codes[code] = (errors.ack_codes[code] || 0) + 1;
        if (errors.ack_error <= 3) noteErr("party:update ack", JSON.stringify(ack).slice(0, 300));
      }
    });
    schedule(c, at + period * (1 + opts.jitter * (2 * Math.random() - 1)));
  }
  for (const c of active) schedule(c, t0 + Math.random() * period);

  // Measurement points.
  let pids = [], srv0, cpu0, stat0, wall0, rssMax = 0, rssSamples = [];
  await sleep(winStart - now());
  pids = serverTree(opts.serverPids);
  const aux0 = sampleServers(opts.auxPids);
  srv0 = sampleServers(pids); cpu0 = process.cpuUsage(); stat0 = readProcStat(); wall0 = now();
  log(`window open: ${opts.duration} s, server pids ${pids.join(",") || "(none)"}`);
  const rssTimer = setInterval(() => {
    const s = sampleServers(pids); rssMax = Math.max(rssMax, s.rss); rssSamples.push(s.rss);
  }, 1000);
  const progress = setInterval(() => log(`sent ${sentWin} expected ${expectedWin} received ${receivedWin}`), 10000);
  await sleep(winEnd - now());
  const aux1 = sampleServers(opts.auxPids);
  const srv1 = sampleServers(pids), cpu1 = process.cpuUsage(cpu0), stat1 = readProcStat(), wall = (now() - wall0) / 1000;
  const la = loadavg();
  clearInterval(rssTimer); clearInterval(progress);
  rssMax = Math.max(rssMax, srv1.rss);
  log(`window closed; draining ${opts.drain} s`);
  await sleep(opts.drain * 1000);
  for (const c of active) clearTimeout(c.timer);

  const serverCpuS = srv1.cpu - srv0.cpu;
  const genCpuS = (cpu1.user + cpu1.system) / 1e6;
  const dTotal = stat1.total - stat0.total;
  const result = {
    target: opts.target,
    urls: opts.urls,
    placement: opts.placement,
    stamp: opts.stamp,
    client_deflate: opts.deflate,
    batch: opts.batch, // "on": clients took party:updates (one event per tick, batch_interval_ms)
    batch_interval_ms: batchIntervalMs,
    batches_received_total: batchesReceived,
    clients: C,
    clients_active: active.length,
    parties: parties.size,
    party_size: opts.partySize,
    rate_hz: opts.rate,
    payload_bytes: payloadBytes,
    warmup_s: opts.warmup,
    window_s: Math.round(wall * 100) / 100,
    setup_s: Math.round((t0 - 1000 - tSetup) / 100) / 10,
    updates_sent: sentWin,
    deliveries_expected: expectedWin,
    deliveries_received: receivedWin,
    delivery_ratio: expectedWin ? Math.round((receivedWin / expectedWin) * 1e5) / 1e5 : null,
    latency_ms: lat.summary(),
    ack_latency_ms: ackLat.summary(),
    generator_lag_ms: genLag.summary(),
    server_pids: pids,
    server_processes_alive_end: srv1.alive,
    server_cpu_s: Math.round(serverCpuS * 100) / 100,
    server_cpu_pct: Math.round((serverCpuS / wall) * 1000) / 10,
    server_user_pct: Math.round(((srv1.user - srv0.user) / wall) * 1000) / 10, // of one core
    server_sys_pct: Math.round(((srv1.sys - srv0.sys) / wall) * 1000) / 10,
    server_rss_mb_max: Math.round(rssMax / 1048576),
    server_rss_mb_end: Math.round(srv1.rss / 1048576),
    deliveries_per_server_cpu_s: serverCpuS > 0 ? Math.round(receivedWin / serverCpuS) : null,
    // Under overload the server spends the window delivering older (warm-up) updates late; these
    // count every delivery that arrived during the window, whenever it was sent.
    deliveries_arrived_in_window: arrivedWin,
    arrived_per_server_cpu_s: serverCpuS > 0 ? Math.round(arrivedWin / serverCpuS) : null,
    aux_pids: opts.auxPids,
    aux_cpu_s: Math.round((aux1.cpu - aux0.cpu) * 100) / 100,
    aux_cpu_pct: Math.round(((aux1.cpu - aux0.cpu) / wall) * 1000) / 10,
    generator_cpu_s: Math.round(genCpuS * 100) / 100,
    generator_cpu_pct: Math.round((genCpuS / wall) * 1000) / 10,
    steal_pct: dTotal ? Math.round(((stat1.steal - stat0.steal) / dTotal) * 1000) / 10 : null,
    host_busy_pct: dTotal ? Math.round((1 - (stat1.idle - stat0.idle) / dTotal) * 1000) / 10 : null,
    loadavg: la,
    nproc: os.cpus().length,
    errors,
    received_total: receivedTotal,
    unmatched,
  };
  const invalid = [];
  if (result.generator_cpu_pct > 80) invalid.push(`generator used ${result.generator_cpu_pct}% of a core (> 80%): the generator, not the server, may be the bottleneck`);
  if (opts.serverPids.length && srv1.alive < pids.length) invalid.push("a server process died during the window");
  if (errors.register || errors.connect || errors.party) invalid.push(`setup failures: register ${errors.register}, connect ${errors.connect}, party ${errors.party}`);
  result.valid = invalid.length === 0;
  result.invalid_reasons = invalid;
  result.latency_quotable = result.valid && result.steal_pct !== null && result.steal_pct < 10;
  const L = result.latency_ms;
  log(`${result.valid ? "VALID" : "INVALID: " + invalid.join("; ")}`);
  log(`C=${C} delivered ${receivedWin}/${expectedWin} (${(100 * (result.delivery_ratio || 0)).toFixed(2)}%) p50 ${L.p50} p95 ${L.p95} p99 ${L.p99} max ${L.max} ms; ` +
      `server cpu ${result.server_cpu_pct}% (user ${result.server_user_pct} sys ${result.server_sys_pct}) rss ${result.server_rss_mb_max} MB; ${result.deliveries_per_server_cpu_s} deliveries/cpu-s; ` +
      `generator ${result.generator_cpu_pct}%; steal ${result.steal_pct}%` + (result.latency_quotable ? "" : " (latency NOT quotable)"));
  process.stdout.write(JSON.stringify(result) + "\n");
  for (const c of active) c.sock.close();
  setTimeout(() => process.exit(0), 200);
}

main().catch((e) => { log(`fatal: ${e.stack || e}`); process.exit(2); });
