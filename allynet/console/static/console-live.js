/* Live updates of a console page (the reports queue, the live map) over Socket.IO.
 *
 * The page's socket is listen-only: it connects with a short-lived socket token that the page asks
 * its own session for (POST socket-token, with the session's CSRF value; the session cookie itself
 * is HttpOnly), and the server puts it in the console's rooms. On every `console:changed` (and on
 * every (re)connect, to catch up on what happened meanwhile) the page fetches a fresh copy of
 * itself and brings its `data-sync` parts up to date: lists are matched item by item on their ids
 * (an item that did not change keeps its node, so a half-typed reason stays), text parts are
 * copied. Scripts loaded after this one (the map) add their own refreshers to
 * `window.allynetConsole.refreshers` and fetch with `window.allynetConsole.get`.
 * Nothing here writes HTML from data: the parts come from the server's escaped template.
 */
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.live || typeof io !== "function") { return; }
  var live = window.allynetConsole = window.allynetConsole || {};
  live.refreshers = live.refreshers || [];
  var statusEl = document.getElementById("live-status");
  var MESSAGES = {
    connecting: "Connecting for live updates…",
    live: "Live: this page updates by itself.",
    offline: "Live updates paused: reconnecting…",
    ended: "Live updates stopped: your session ended. Sign in again."
  };

  function setStatus(state) {
    if (!statusEl) { return; }
    statusEl.dataset.state = state;
    statusEl.textContent = MESSAGES[state];
  }

  function sameIds(a, b) {
    if (a.length !== b.length) { return false; }
    for (var i = 0; i < a.length; i += 1) { if (a[i].id !== b[i].id) { return false; } }
    return true;
  }

  function syncList(current, fresh) {
    var old = {};
    Array.prototype.forEach.call(current.children, function (child) { if (child.id) { old[child.id] = child; } });
    var wanted = Array.prototype.map.call(fresh.children, function (child) {
      var kept = child.id && old[child.id];
      return kept && kept.outerHTML === child.outerHTML ? kept : document.importNode(child, true);
    });
    if (sameIds(Array.prototype.slice.call(current.children), wanted)) {
      wanted.forEach(function (node, i) {
        var here = current.children[i];
        if (here !== node) { current.replaceChild(node, here); }
      });
    } else {
      current.replaceChildren.apply(current, wanted);
    }
  }

  function get(url, accept) {
    // The session's own pages only: a redirect (to the sign-in page) is a failure, not a page.
    return fetch(url, {credentials: "same-origin", redirect: "manual", headers: {"Accept": accept}})
      .then(function (response) {
        if (response.status !== 200) { throw new Error(url + " answered " + response.status); }
        return response;
      });
  }

  function syncPage() {
    return get(window.location.href, "text/html")
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-sync]").forEach(function (part) {
          var twin = part.id && fresh.getElementById(part.id);
          if (!twin) { return; }
          if (part.dataset.sync === "list") {
            syncList(part, twin);
          } else {
            part.textContent = "";
            Array.prototype.forEach.call(twin.childNodes, function (node) {
              part.appendChild(document.importNode(node, true));
            });
            part.hidden = twin.hidden;
          }
        });
      });
  }

  var running = false, again = false, timer = null, synced = 0;

  function refresh() {
    if (running) { again = true; return; }
    running = true;
    var work = [syncPage()].concat(live.refreshers.map(function (fn) { return fn(); }));
    Promise.all(work).catch(function (error) { console.warn("console refresh failed", error); })
      .then(function () {
        running = false;
        synced += 1;
        body.dataset.synced = String(synced);
        if (again) { again = false; refresh(); }
      });
  }

  function soon() {
    // Several changes in a burst (a moderation and its audit, an SOS and its status) make one refresh.
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 100);
  }

  function socketToken(callback) {
    fetch(body.dataset.socketTokenUrl, {method: "POST", credentials: "same-origin", redirect: "manual",
                                        headers: {"X-CSRF-TOKEN": body.dataset.csrf, "Accept": "application/json"}})
      .then(function (response) {
        if (response.status !== 200) { throw new Error("no socket token: " + response.status); }
        return response.json();
      })
      .then(function (data) { callback({token: data.token}); })
      .catch(function () { callback({}); });  // refused at connect: the status says so
  }

  var endedFor = null;
  var socket = io({autoConnect: false, auth: socketToken});
  socket.on("connect", function () { setStatus("live"); soon(); });
  socket.on("console:changed", soon);
  socket.on("session:ended", function (data) { endedFor = data && data.reason; });
  socket.on("disconnect", function (reason) {
    if (reason !== "io server disconnect") { setStatus("offline"); return; }  // the client reconnects
    if (endedFor === "token_expired") {  // the socket token ran out, not the session: a new one
      endedFor = null;
      setStatus("offline");
      socket.connect();
      return;
    }
    setStatus("ended");
  });
  socket.on("connect_error", function () { setStatus(socket.active ? "offline" : "ended"); });
  live.socket = socket;
  live.refresh = refresh;
  live.get = get;
  socket.connect();
}());
