// Minimal Node.js Socket.IO relay: the peer AllyNet's real-time path is measured against.
//
// No auth, no storage, no validation beyond "is an object". It speaks the same party events
// as AllyNet so the same load generator drives both:
//   party:create {name}                 -> ack {ok, party: {id, invite_code, name}}; joins the room
//   party:join   {invite_code}|{party_id} -> joins the room; ack {ok, party}
//   party:update {party_id, ...}         -> broadcast party:update {...payload, user_id, ts} to the
//                                           room except the sender; ack {ok: true}
// The "user id" is whatever the client passes as auth.user (or a fresh counter).
//
// PORT (default 5100); REDIS_URL set -> the @socket.io/redis-adapter, so several processes on
// different ports share rooms (the setup "peer-2p").
"use strict";

const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");

const PORT = Number(process.env.PORT || 5100);
const REDIS_URL = process.env.REDIS_URL || "";

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end('{"success":true}');
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, { cors: { origin: "*" }, maxHttpBufferSize: 65536 });

// Parties are derived from the invite code itself (a hash), so any process can resolve one
// without a shared store: party_id = sha1(code)[:24]. Good enough for a relay with no storage.
function partyIdFor(code) {
  return crypto.createHash("sha1").update(code).digest("hex").slice(0, 24);
}

let nextUser = 0;

io.on("connection", (socket) => {
  const auth = socket.handshake.auth || {};
  socket.data.user = typeof auth.user === "string" ? auth.user : `u${process.pid}-${nextUser++}`;
  socket.join(`user:${socket.data.user}`);

  socket.on("party:create", (payload, ack) => {
    if (typeof ack !== "function") return;
    if (!payload || typeof payload !== "object") return ack({ ok: false, error: { code: "bad_request" } });
    const code = crypto.randomBytes(6).toString("base64url").slice(0, 8);
    const id = partyIdFor(code);
    socket.join(`party:${id}`);
    ack({ ok: true, party: { id, invite_code: code, name: String(payload.name || "") } });
  });

  socket.on("party:join", (payload, ack) => {
    if (typeof ack !== "function") return;
    if (!payload || typeof payload !== "object") return ack({ ok: false, error: { code: "bad_request" } });
    const id = payload.party_id || (payload.invite_code ? partyIdFor(String(payload.invite_code)) : null);
    if (!id) return ack({ ok: false, error: { code: "validation_error" } });
    socket.join(`party:${id}`);
    ack({ ok: true, party: { id } });
  });

  socket.on("party:update", (payload, ack) => {
    if (!payload || typeof payload !== "object" || typeof payload.party_id !== "string") {
      if (typeof ack === "function") ack({ ok: false, error: { code: "validation_error" } });
      return;
    }
    const out = Object.assign({}, payload, { user_id: socket.data.user, ts: new Date().toISOString() });
    socket.to(`party:${payload.party_id}`).emit("party:update", out);
    if (typeof ack === "function") ack({ ok: true });
  });
});

async function main() {
  if (REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  httpServer.listen(PORT, () => {
    console.log(`peer relay listening on :${PORT} (pid ${process.pid}, redis: ${REDIS_URL ? "on" : "off"})`);
  });
}

function shutdown() {
  io.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
