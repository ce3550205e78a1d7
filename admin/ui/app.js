// edge status page: fetches the admin JSON API and redraws every few
// seconds, without reloading. Every value is set with textContent (el()),
// never as HTML.
"use strict";

const REFRESH_MS = 3000;
const HOUR = 3600e3, DAY = 24 * HOUR;
const $ = (id) => document.getElementById(id);

// el builds an element; string children become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "width") e.style.width = v; // CSSOM: the CSP refuses style attributes
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

const ts = (s) => (s ? new Date(s) : null);

function ago(d, now) {
  if (!d) return "never";
  return span(now - d) + (d <= now ? " ago" : " from now");
}
function span(ms) {
  ms = Math.abs(ms);
  if (ms < 90e3) return Math.round(ms / 1e3) + " s";
  if (ms < 90 * 60e3) return Math.round(ms / 60e3) + " min";
  if (ms < 2 * DAY) return (ms / HOUR).toFixed(1) + " h";
  return Math.round(ms / DAY) + " days";
}
function when(d, now) {
  if (!d) return "—";
  const t = el("time", { datetime: d.toISOString(), title: d.toISOString() });
  t.textContent = d.toLocaleString() + " (" + ago(d, now) + ")";
  return t;
}

// api fetches a JSON endpoint; 401 means the session is gone.
class Unauthorized extends Error {}
async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) throw new Unauthorized(path);
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, body };
}

// Certificates, most urgent first.
function certView(c, now) {
  const nb = ts(c.not_before), na = ts(c.not_after), ren = ts(c.renewal_at);
  const life = nb && na ? na - nb : 0;
  const left = na ? na - now : 0;
  let rank = 4, tone = "ok", label = "ready";
  switch (c.state) {
    case "expired": rank = 0; tone = "bad"; label = "expired"; break;
    case "failed": rank = 1; tone = "bad"; label = na ? "failing (the old certificate still serves)" : "failing"; break;
    case "obtaining": rank = 2; tone = "warn"; label = na ? "renewing" : "obtaining"; break;
    case "pending": rank = 2; tone = "warn"; label = "pending: no certificate yet"; break;
    case "renewal overdue": rank = 1; tone = "bad"; label = "ready, renewal overdue"; break;
    case "renewal due": rank = 3; tone = "warn"; label = "ready, renewal due"; break;
    default:
      if (ren && now >= ren) { rank = 3; tone = "warn"; label = "ready, renewal due"; }
  }
  let barTone = "ok";
  if (!na || left <= 0 || (life && left / life < 0.1)) barTone = "bad";
  else if ((ren && now >= ren) || (life && left / life < 1 / 3)) barTone = "warn";
  return { c, nb, na, ren, life, left, rank, tone, label, barTone };
}

function renderCerts(list, now) {
  const views = (list || []).map((c) => certView(c, now));
  views.sort((a, b) => a.rank - b.rank || (a.na ? a.left : -1) - (b.na ? b.left : -1) || a.c.name.localeCompare(b.c.name));
  const cards = views.map((v) => {
    const { c } = v;
    const names = [...new Set([c.name, ...(c.names || [])])];
    const pct = v.life ? Math.max(0, Math.min(100, (100 * v.left) / v.life)) : 0;
    const dl = el("dl", {},
      el("dt", { text: "issuer" }), el("dd", { text: c.issuer || "—" }),
      el("dt", { text: "expires" }), el("dd", {}, when(v.na, now)),
      el("dt", { text: "renewal" }), el("dd", {}, when(v.ren, now),
        c.renewal_source ? el("span", { class: "muted", text: " by " + c.renewal_source }) : null),
      el("dt", { text: "state" }), el("dd", {}, el("span", { class: "state " + v.tone, text: v.label })),
    );
    if (c.last_error) {
      dl.append(el("dt", { text: "last error" }), el("dd", { class: "error bad", text: c.last_error }));
    }
    if (c.last_attempt) dl.append(el("dt", { text: "last attempt" }), el("dd", {}, when(ts(c.last_attempt), now)));
    if (c.failures) dl.append(el("dt", { text: "failures" }), el("dd", { class: "bad", text: String(c.failures) + " in a row" }));
    if (c.next_retry) dl.append(el("dt", { text: "next retry" }), el("dd", {}, when(ts(c.next_retry), now)));
    for (const x of c.exports || []) {
      let res;
      if (x.last_error) {
        res = el("span", {}, el("span", { class: "bad", text: "failed: " }), el("span", { class: "error", text: x.last_error }),
          x.next_attempt ? el("span", { class: "muted" }, " next try ", when(ts(x.next_attempt), now)) : null);
      } else if (x.pending) {
        res = el("span", { class: "warn", text: "pending" });
      } else if (x.delivered_at) {
        res = el("span", {}, el("span", { class: "ok", text: "delivered " }), when(ts(x.delivered_at), now));
      } else {
        res = el("span", { class: "muted", text: "not delivered yet" });
      }
      dl.append(el("dt", { text: "export " + x.target }), el("dd", { class: "export", "data-target": x.target }, res));
    }
    const days = v.na ? (v.left > 0 ? span(v.left) + " left" : "expired " + span(v.left) + " ago") : "no certificate";
    return el("article", { class: "card cert" + (v.rank <= 1 ? " urgent" : v.rank <= 3 ? " attention" : ""), "data-name": c.name, "data-state": c.state },
      el("div", { class: "names" }, names.map((n) => el("span", { class: "cert-name", text: n }))),
      el("div", { class: "bar", role: "img", "aria-label": days + (v.life ? " of " + span(v.life) : "") },
        el("span", { class: v.barTone, width: pct.toFixed(1) + "%" })),
      el("div", { class: "muted", text: days + (v.life ? " of " + span(v.life) : "") }),
      dl);
  });
  $("cert-list").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted", text: "No managed certificates." })]));
}

// backendState names what a backend is doing, worst first.
function backendState(b) {
  if (b.drained) return ["drained", "warn"];
  if (!b.healthy) return ["down", "bad"];
  if (b.ejected) return ["ejected", "bad"];
  if (!b.up) return ["down", "bad"];
  return ["up", "ok"];
}

function renderPools(pools, now) {
  const out = (pools || []).map((p) => {
    const rows = (p.backends || []).map((b) => {
      const [state, tone] = backendState(b);
      const rate = !b.recent_requests ? "no requests (1 min)"
        : (100 * b.error_rate).toFixed(1) + " % of " + b.recent_requests + " (1 min)";
      return el("tr", { class: "backend", "data-url": b.url, "data-state": state },
        el("td", { "data-label": "backend", text: b.url }),
        el("td", { "data-label": "health", class: "state " + tone, text: state }),
        el("td", { "data-label": "in flight", text: String(b.in_flight ?? 0) }),
        el("td", { "data-label": "recent errors", text: rate }),
        el("td", { "data-label": "last change", class: "changed" }, b.changed_at ? when(ts(b.changed_at), now) : "—"));
    });
    return el("table", { class: "backends", "data-pool": p.name },
      el("caption", {}, p.name + " ", el("span", { class: "muted", text: p.policy || "" })),
      el("thead", {}, el("tr", {}, ["backend", "health", "in flight", "recent errors", "last change"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows));
  });
  $("pool-list").replaceChildren(...(out.length ? out : [el("p", { class: "muted", text: "No pools." })]));
}

function renderCluster(info, locks) {
  const body = $("cluster-body");
  const parts = [];
  const c = info.status === 200 && info.body ? info.body : null;
  if (c) {
    parts.push(el("p", {}, "This edge: ", el("strong", { text: c.node }), " · storage ", c.storage,
      c.shared ? " (shared by the edges below)" : " (not shared)"));
    if ((c.peers || []).length) parts.push(el("p", {}, "Peers asked for challenges: " + c.peers.join(", ")));
  }
  if (locks.status === 200 && Array.isArray(locks.body)) {
    const holders = [...new Set(locks.body.map((l) => l.holder))].sort();
    parts.push(el("p", {}, "Edges holding locks now: ", holders.length ? holders.join(", ") : "none"));
    if (locks.body.length) {
      parts.push(el("table", { class: "locks" },
        el("thead", {}, el("tr", {}, ["lock", "holder", "age"].map((h) => el("th", { text: h })))),
        el("tbody", {}, locks.body.map((l) => el("tr", {},
          el("td", { text: l.name }), el("td", { text: l.holder }), el("td", { text: span((l.age_seconds || 0) * 1e3) }))))));
    }
  } else if (locks.status !== 404) {
    parts.push(el("p", { class: "bad", text: "locks: " + ((locks.body && locks.body.error) || "HTTP " + locks.status) }));
  } else if (!c) {
    parts.push(el("p", { class: "muted", text: (locks.body && locks.body.error) || "No shared store." }));
  }
  body.replaceChildren(...parts);
}

const EVENT_TONE = { obtained: "ok", renewed: "ok", exported: "ok", reloaded: "info", failed: "bad", export_failed: "bad", reload_failed: "bad" };

function renderEvents(events, now) {
  const items = (events || []).map((e) => el("li", { class: "event", "data-kind": e.kind },
    when(ts(e.time), now),
    el("span", { class: "state " + (EVENT_TONE[e.kind] || ""), text: e.kind.replace("_", " ") }),
    e.name ? el("span", { text: e.name }) : null,
    e.target ? el("span", { class: "muted", text: "→ " + e.target }) : null,
    e.detail ? el("span", { class: "error", text: e.detail }) : null));
  $("event-list").replaceChildren(...(items.length ? items : [el("li", { class: "muted", text: "Nothing yet." })]));
}

// clear removes every piece of data from the page (logged out).
function clear() {
  for (const id of ["cert-list", "pool-list", "cluster-body", "event-list"]) $(id).replaceChildren();
  $("content").hidden = true;
}

function showLogin(show) {
  $("login").hidden = !show;
  if (show) { clear(); $("token").focus(); }
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  const now = new Date();
  try {
    const s = await api("/session");
    $("logout").hidden = !(s.body && s.body.token_required && s.body.authorized);
    if (s.body && !s.body.authorized) {
      showLogin(true);
      $("updated").textContent = "login required";
      return; // no polling until logged in
    }
    const [certs, pools, cluster, locks, events] = await Promise.all(
      ["/api/certificates", "/api/pools", "/api/cluster", "/api/locks", "/api/events"].map(api));
    showLogin(false);
    $("content").hidden = false;
    renderCerts(certs.body, now);
    renderPools(pools.body, now);
    renderCluster(cluster, locks);
    renderEvents(events.body, now);
    $("problem").hidden = true;
    $("updated").textContent = "updated " + now.toLocaleTimeString();
    document.body.dataset.refreshed = String(now.getTime());
  } catch (err) {
    if (err instanceof Unauthorized) {
      showLogin(true);
      $("updated").textContent = "login required";
      return;
    }
    $("problem").textContent = "Cannot reach edge's admin API: " + err.message + " (retrying)";
    $("problem").hidden = false;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/login", {
    method: "POST", credentials: "same-origin",
    headers: { "X-Edge-Admin": "1", "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: $("token").value }),
  });
  $("token").value = "";
  if (r.ok) {
    $("login-error").hidden = true;
    refresh();
    return;
  }
  let msg = "HTTP " + r.status;
  try { msg = (await r.json()).error || msg; } catch (_) { /* keep */ }
  $("login-error").textContent = msg;
  $("login-error").hidden = false;
});

$("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-Edge-Admin": "1" } });
  refresh();
});

refresh();
