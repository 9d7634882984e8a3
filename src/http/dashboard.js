// The paysteps dashboard: hash routes over /api/v1, re-rendered by polling.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const POLL_MS = 2000;
/** A status count, shown as "10000+" once the server stopped counting. */
const countText = (n, cap) => (cap && n > cap ? cap + "+" : String(n));

const STATUSES = ["pending", "queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled"];
const SPANS = [["", "any time"], ["15m", "last 15 min"], ["1h", "last hour"], ["24h", "last day"], ["7d", "last 7 days"]];
const MODES = {
  from_failure: "Resume from the failed step: completed steps keep their recorded output and are not run again; execution starts at the step that failed.",
  from_start: "Run from the start: every step runs again, including those that completed.",
};

const app = document.getElementById("app");
let timer = null;
let pending = false;
// Filters and panels survive re-renders.
const state = { runs: { status: "", function: "", since: "", until: "", q: "" }, events: { name: "", q: "", namesPrefix: "" }, bulk: null, message: null, reportTables: {} };

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "—";
}

function duration(from, to) {
  if (!from || !to) return "—";
  const ms = to - from;
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}

function badge(status) {
  return h("span", { class: "badge " + status, testid: "status-badge" }, status);
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { accept: "application/json" }, credentials: "same-origin" };
  if (options.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.headers["x-csrf-token"] = CSRF;
    init.body = JSON.stringify(options.body);
  }
  const res = await fetch("/api/v1" + path, init);
  if (res.status === 401) {
    location.href = "/signin";
    throw new Error("signed out");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}

function message() {
  if (!state.message) return null;
  return h("p", { class: "message " + state.message.kind, testid: "action-message" }, state.message.text);
}

function say(kind, text) {
  state.message = { kind, text };
}

// ---------- routing ----------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.getAttribute("href") === "#/" + (parts[0] || "runs"));
  }
  switch (parts[0] || "runs") {
    case "runs": return parts[1] ? runDetail(parts[1]) : runsPage();
    case "events": return parts[1] ? eventDetail(parts[1]) : eventsPage();
    case "functions": return functionsPage();
    case "apps": return appsPage();
    case "billing": return billingPage();
    default: return runsPage();
  }
}

let again = false;

async function refresh(polled) {
  if (pending) {
    // Whatever changed meanwhile is shown once the render in flight is done.
    if (!polled) again = true;
    return;
  }
  // A poll does not re-render under the operator's cursor while they type or pick a date.
  if (polled && document.activeElement && document.activeElement.matches("input[type=search], input[type=datetime-local]")) return;
  pending = true;
  try {
    const view = await route();
    if (view) {
      app.replaceChildren(view);
    }
    document.querySelector("[data-testid=live]").classList.remove("stale");
  } catch (err) {
    document.querySelector("[data-testid=live]").classList.add("stale");
    app.replaceChildren(h("p", { class: "message error", testid: "load-error" }, "Could not load: " + err.message));
  } finally {
    pending = false;
  }
  if (again) {
    again = false;
    refresh(false);
  }
}

function schedule() {
  clearInterval(timer);
  timer = setInterval(() => refresh(true), POLL_MS);
}

window.addEventListener("hashchange", () => {
  state.message = null;
  state.bulk = null;
  refresh(false);
});

// ---------- runs ----------

// A search box whose typed text survives re-renders until it is submitted.
function searchForm(f, testid) {
  const keep = (e) => { f.draft = e.target.value; };
  return h("form", { class: "search", onsubmit: (e) => { e.preventDefault(); f.q = e.target.q.value.trim(); f.draft = undefined; refresh(); } },
    h("input", { type: "search", name: "q", value: f.draft !== undefined ? f.draft : f.q, placeholder: "event id, Stripe object id, customer…", testid, oninput: keep, onchange: keep }),
    h("button", { type: "submit", testid: testid + "-submit" }, "Search"));
}

async function runsPage() {
  const f = state.runs;
  const [list, functions] = await Promise.all([
    api("/runs" + query({ status: f.status, function: f.function, since: f.since, until: f.until, q: f.q, limit: 200 })),
    api("/functions"),
  ]);
  const set = (key) => (e) => {
    f[key] = e.target.value;
    state.bulk = null;
    refresh();
  };
  const counts = h("div", { class: "counts", testid: "status-counts" },
    STATUSES.map((s) => h("button", {
      class: "count " + s + (f.status === s ? " selected" : ""),
      testid: "count-" + s,
      onclick: () => { f.status = f.status === s ? "" : s; state.bulk = null; refresh(); },
    }, h("strong", {}, countText(list.counts[s] || 0, list.count_cap)), " " + s)));
  const filters = h("div", { class: "filters" },
    h("label", {}, "Status ", h("select", { testid: "filter-status", onchange: set("status") },
      h("option", { value: "" }, "all"), STATUSES.map((s) => h("option", { value: s, selected: f.status === s }, s)))),
    h("label", {}, "Function ", h("select", { testid: "filter-function", onchange: set("function") },
      h("option", { value: "" }, "all"),
      functions.functions.map((fn) => h("option", { value: fn.id, selected: f.function === fn.id }, fn.id)))),
    h("label", {}, "Created ", h("select", { testid: "filter-since", onchange: set("since") },
      SPANS.map(([v, label]) => h("option", { value: v, selected: f.since === v }, label)))),
    h("label", {}, "before ", h("input", {
      type: "datetime-local", testid: "filter-until", value: f.untilText || "",
      onchange: (e) => {
        f.untilText = e.target.value;
        f.until = e.target.value ? String(new Date(e.target.value).getTime()) : "";
        state.bulk = null;
        refresh();
      },
    })),
    searchForm(f, "runs-search"),
  );
  const rows = list.runs.map((r) => h("tr", { testid: "run-row", "data-run-id": r.id, "data-status": r.status, class: r.status },
    h("td", {}, h("a", { href: "#/runs/" + encodeURIComponent(r.id), testid: "run-link" }, r.id)),
    h("td", {}, r.function_id),
    h("td", {}, badge(r.status), r.replay_of ? h("span", { class: "tag", title: "replay of " + r.replay_of }, "replay") : null),
    h("td", {}, time(r.created_at)),
    h("td", {}, duration(r.started_at, r.ended_at)),
    h("td", { class: "error-cell" }, r.error || "")));
  return h("section", { testid: "runs-page" },
    h("h1", {}, "Runs"),
    counts,
    filters,
    bulkPanel(f),
    message(),
    h("p", { class: "muted" }, `${list.total} matching; newest ${list.runs.length} shown.`),
    h("table", { testid: "runs-table" },
      h("thead", {}, h("tr", {}, ["Run", "Function", "Status", "Created", "Duration", "Error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs match.")))));
}

function selection(f, kind) {
  const status = f.status || (kind === "replay" ? "failed" : "");
  return { function: f.function || null, status: status || null, since: f.since || null, until: f.until || null, search: f.q || null };
}

function describe(sel) {
  const parts = [];
  parts.push(sel.status ? "status " + sel.status : "every status that has not ended");
  parts.push(sel.function ? "function " + sel.function : "every function");
  const span = SPANS.find(([v]) => v === (sel.since || ""));
  parts.push(span ? span[1] : "");
  if (sel.until) parts.push("created before " + time(Number(sel.until)));
  if (sel.search) parts.push("matching “" + sel.search + "”");
  return parts.filter(Boolean).join(", ");
}

function bulkPanel(f) {
  const b = state.bulk;
  const start = (kind) => async () => {
    const sel = selection(f, kind);
    try {
      const preview = await api("/runs/" + kind, { method: "POST", body: sel });
      state.bulk = { kind, sel, matched: preview.matched, mode: "from_failure" };
    } catch (err) {
      say("error", err.message);
    }
    refresh();
  };
  const buttons = h("div", { class: "bulk-buttons" },
    h("button", { testid: "bulk-replay", onclick: start("replay") }, "Bulk replay…"),
    h("button", { testid: "bulk-cancel", class: "danger", onclick: start("cancel") }, "Bulk cancel…"));
  if (!b) return buttons;
  const confirm = async () => {
    const body = Object.assign({}, b.sel, { confirm: true, expected: b.matched });
    if (b.kind === "replay") body.mode = b.mode;
    try {
      const done = await api("/runs/" + b.kind, { method: "POST", body });
      say("ok", b.kind === "replay" ? `Replayed ${done.run_ids.length} runs (${b.mode.replace("_", " ")}).` : `Cancelled ${done.run_ids.length} runs.`);
    } catch (err) {
      say("error", err.message);
    }
    state.bulk = null;
    refresh();
  };
  return h("div", { class: "bulk panel", testid: "bulk-panel" },
    h("p", { testid: "bulk-preview", "data-matched": b.matched },
      `${b.matched} run${b.matched === 1 ? "" : "s"} match: ${describe(b.sel)}.`),
    b.kind === "replay" ? h("div", {},
      Object.entries(MODES).map(([mode, text]) => h("label", { class: "mode" },
        h("input", { type: "radio", name: "bulk-mode", value: mode, checked: b.mode === mode, testid: "bulk-mode-" + mode,
          onchange: () => { b.mode = mode; } }), " " + text))) : null,
    h("button", { testid: "bulk-confirm", class: b.kind === "cancel" ? "danger" : "primary", disabled: b.matched === 0, onclick: confirm },
      b.kind === "replay" ? `Confirm: replay ${b.matched} runs` : `Confirm: cancel ${b.matched} runs`),
    h("button", { testid: "bulk-dismiss", onclick: () => { state.bulk = null; refresh(); } }, "Never mind"));
}

// ---------- run detail ----------

async function runDetail(id) {
  const run = await api("/runs/" + encodeURIComponent(id));
  const ended = ["completed", "failed", "cancelled"].includes(run.status);
  const replay = (mode) => async () => {
    try {
      const res = await api("/runs/" + encodeURIComponent(run.id) + "/replay", { method: "POST", body: { mode } });
      say("ok", "Replay started: " + res.run.id);
      location.hash = "#/runs/" + encodeURIComponent(res.run.id);
    } catch (err) {
      say("error", err.message);
    }
    refresh();
  };
  const cancel = async () => {
    if (!window.confirm("Cancel run " + run.id + "?")) return;
    try {
      await api("/runs/" + encodeURIComponent(run.id) + "/cancel", { method: "POST", body: {} });
      say("ok", "Run cancelled.");
    } catch (err) {
      say("error", err.message);
    }
    refresh();
  };
  const steps = run.steps.map((s) => {
    const failing = run.failed_step === s.key;
    return h("li", { class: "step " + s.status + (failing ? " failing" : ""), testid: failing ? "failed-step" : "step", "data-step": s.name, "data-status": s.status },
      h("div", { class: "step-head" },
        h("strong", {}, s.name), " ", badge(s.status),
        failing ? h("span", { class: "tag fail" }, "failed here") : null,
        h("span", { class: "muted" }, ` started ${time(s.started_at)} · ${duration(s.started_at, s.ended_at)} · ${s.attempts} attempt${s.attempts === 1 ? "" : "s"}`)),
      s.error ? h("pre", { class: "step-error", testid: "step-error" }, s.error) : null,
      s.output !== null && s.output !== undefined ? h("details", {}, h("summary", {}, "output"), json(s.output)) : null);
  });
  const history = run.history.map((e) => h("li", { testid: "history-entry", "data-status": e.status },
    badge(e.status), ` ${time(e.at)} · attempt ${e.attempt}`,
    e.error && e.status !== "running" ? h("span", { class: "muted" }, " — " + e.error) : null));
  const links = h("div", { class: "links", testid: "run-links" },
    run.replay_of ? h("p", {}, "Replay of ", h("a", { href: "#/runs/" + encodeURIComponent(run.replay_of), testid: "replay-of-link" }, run.replay_of)) : null,
    run.replays.length ? h("p", {}, "Replays: ", run.replays.map((r) => h("span", { class: "replay" },
      h("a", { href: "#/runs/" + encodeURIComponent(r.id), testid: "replay-link", "data-status": r.status }, r.id), " ", badge(r.status)))) : null);
  return h("section", { testid: "run-detail", "data-run-id": run.id, "data-status": run.status },
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")),
    h("h1", {}, "Run ", h("code", {}, run.id), " ", h("span", { testid: "run-status" }, badge(run.status))),
    h("dl", { class: "facts" },
      h("dt", {}, "Function"), h("dd", {}, run.function_id),
      h("dt", {}, "Event"), h("dd", {}, run.event ? h("a", { href: "#/events/" + encodeURIComponent(run.event.id) }, run.event.name + " (" + (run.event.external_id || run.event.id) + ")") : run.event_id),
      h("dt", {}, "Customer"), h("dd", {}, (run.event && run.event.customer) || "—"),
      h("dt", {}, "Created"), h("dd", {}, time(run.created_at)),
      h("dt", {}, "Duration"), h("dd", {}, duration(run.started_at, run.ended_at)),
      h("dt", {}, "Executions"), h("dd", {}, run.attempt)),
    run.error ? h("pre", { class: "run-error", testid: "run-error" }, run.error) : null,
    links,
    message(),
    h("div", { class: "actions panel" },
      h("h2", {}, "Actions"),
      ended ? [
        h("div", { class: "action" },
          h("button", { class: "primary", testid: "replay-from-failure", onclick: replay("from_failure") }, "Replay from failed step"),
          h("span", { class: "explain", testid: "explain-from-failure" }, MODES.from_failure)),
        h("div", { class: "action" },
          h("button", { testid: "replay-from-start", onclick: replay("from_start") }, "Replay from start"),
          h("span", { class: "explain", testid: "explain-from-start" }, MODES.from_start)),
      ] : h("div", { class: "action" },
        h("button", { class: "danger", testid: "cancel-run", onclick: cancel }, "Cancel run"),
        h("span", { class: "explain" }, "A run that is not executing stops at once; a running run stops at its next step boundary."))),
    h("div", { class: "columns" },
      h("div", {}, h("h2", {}, "Steps"), h("ol", { class: "timeline", testid: "steps" }, steps.length ? steps : h("li", { class: "muted" }, "No step has run yet."))),
      h("div", {}, h("h2", {}, "Status history"), h("ul", { class: "history", testid: "history" }, history))),
    h("h2", {}, "Event payload"),
    run.event ? h("div", { testid: "event-payload" }, json(run.event.data)) : h("p", {}, "The event is missing."));
}

// ---------- events ----------

async function eventsPage() {
  const f = state.events;
  const list = await api("/events" + query({ name: f.name, q: f.q, limit: 200, names_prefix: f.namesPrefix }));
  // The API answers the 100 most frequent names, or those starting with the prefix typed;
  // the chosen name stays offered even when it is not among them.
  const names = list.names.some((n) => n.name === f.name) || !f.name ? list.names : [{ name: f.name, count: null }, ...list.names];
  const rows = list.events.map((e) => h("tr", { testid: "event-row", "data-event-id": e.id },
    h("td", {}, h("a", { href: "#/events/" + encodeURIComponent(e.id) }, e.external_id || e.id)),
    h("td", {}, e.name),
    h("td", {}, time(e.received_at)),
    h("td", {}, e.object_id || "—"),
    h("td", {}, e.customer || "—"),
    h("td", {}, e.runs),
    h("td", { testid: "event-duplicates" }, e.duplicates)));
  return h("section", { testid: "events-page" },
    h("h1", {}, "Events"),
    h("div", { class: "filters" },
      h("form", { class: "search", onsubmit: (e) => { e.preventDefault(); f.namesPrefix = e.target.prefix.value.trim(); refresh(); } },
        h("input", { type: "search", name: "prefix", value: f.namesPrefix, placeholder: "types starting with…", testid: "filter-event-name-prefix" })),
      h("label", {}, "Type ", h("select", { testid: "filter-event-name", onchange: (e) => { f.name = e.target.value; refresh(); } },
        h("option", { value: "" }, "all"),
        names.map((n) => h("option", { value: n.name, selected: f.name === n.name }, n.count === null ? n.name : `${n.name} (${n.count})`)))),
      searchForm(f, "events-search")),
    h("table", { testid: "events-table" },
      h("thead", {}, h("tr", {}, ["Event", "Type", "Received", "Object", "Customer", "Runs", "Duplicates"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No events.")))));
}

async function eventDetail(id) {
  const e = await api("/events/" + encodeURIComponent(id));
  return h("section", { testid: "event-detail" },
    h("p", {}, h("a", { href: "#/events" }, "← Events")),
    h("h1", {}, e.name, " ", h("code", {}, e.external_id || e.id)),
    h("dl", { class: "facts" },
      h("dt", {}, "Received"), h("dd", {}, time(e.received_at)),
      h("dt", {}, "Source"), h("dd", {}, e.source),
      h("dt", {}, "Object"), h("dd", {}, e.object_id || "—"),
      h("dt", {}, "Customer"), h("dd", {}, e.customer || "—"),
      h("dt", {}, "Duplicate deliveries"), h("dd", { testid: "event-duplicates" }, e.duplicates)),
    h("h2", {}, "Runs started"),
    h("ul", {}, e.runs.map((r) => h("li", {}, h("a", { href: "#/runs/" + encodeURIComponent(r.id) }, r.id), " ", r.function_id, " ", badge(r.status)))),
    h("h2", {}, "Payload"),
    json(e.data));
}

// ---------- functions ----------

function pct(rate) {
  return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + "%";
}

function ms(v) {
  return v === null || v === undefined ? "—" : v + " ms";
}

async function functionsPage() {
  const list = await api("/functions");
  const rows = list.functions.map((f) => h("tr", { testid: "function-row", "data-function": f.id },
    h("td", { class: "fn" }, h("strong", {}, f.id), f.on_failure ? h("div", { class: "muted" }, "on failure: " + f.on_failure) : null,
      f.app ? h("div", { class: "muted", testid: "function-app" }, "app: ", h("a", { href: "#/apps" }, f.app)) : null),
    h("td", {}, f.trigger || f.cron || "internal"),
    h("td", { testid: "function-config" }, `${f.retries} retries` + (f.step_timeout_ms ? `, step timeout ${f.step_timeout_ms} ms` : ""),
      (f.flow || []).map((line) => h("div", { class: "muted" }, line))),
    ["hour", "day"].map((w) => {
      const s = f.stats[w];
      return h("td", { testid: "stats-" + w, class: "stats" },
        `${s.runs} runs · ${pct(s.success_rate)} ok`, h("br"), h("span", { class: "muted" }, `p50 ${ms(s.p50_ms)} · p95 ${ms(s.p95_ms)}`));
    }),
    h("td", {}, f.latest_errors.length ? h("ul", { class: "errors" }, f.latest_errors.map((e) => h("li", {},
      h("a", { href: "#/runs/" + encodeURIComponent(e.run_id) }, time(e.ended_at)), " ", e.error || ""))) : "—")));
  return h("section", { testid: "functions-page" },
    h("h1", {}, "Functions"),
    h("table", { testid: "functions-table" },
      h("thead", {}, h("tr", {}, ["Function", "Trigger", "Configuration", "Last hour", "Last day", "Latest errors"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

// ---------- apps ----------

async function syncApp(url) {
  try {
    const answer = await api("/apps/sync", { method: "POST", body: { url } });
    say("ok", answer.functions !== undefined ? `Synced ${url}: ${answer.functions} functions.`
      : answer.awaiting_registration ? `Asked ${url} to register; it syncs out of band.` : `Synced ${url}: nothing changed.`);
  } catch (err) {
    say("error", `Sync of ${url} failed: ${err.message}`);
  }
  refresh(false);
}

async function appsPage() {
  const list = await api("/apps");
  const rows = list.apps.map((a) => h("tr", { testid: "app-row", "data-app": a.url },
    h("td", {}, h("strong", {}, a.app_id || "—"), h("div", { class: "muted" }, a.url)),
    h("td", {}, [a.sdk, a.framework].filter(Boolean).join(" · ") || "—"),
    h("td", { testid: "app-functions" }, String(a.function_count)),
    h("td", {}, time(a.synced_at)),
    h("td", { testid: "app-error" }, a.error ? h("span", { class: "error-cell" }, a.error) : "—"),
    h("td", {}, h("button", { type: "button", testid: "app-sync", onclick: () => syncApp(a.url) }, "Sync"))));
  return h("section", { testid: "apps-page" },
    h("h1", {}, "Apps"),
    message(),
    list.apps.length ? h("table", { testid: "apps-table" },
      h("thead", {}, h("tr", {}, ["App", "SDK", "Functions", "Last sync", "Error", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No apps. Start paysteps with --app-url http://127.0.0.1:3000/api/inngest to run an SDK app's functions."));
}

// ---------- billing ----------

/** How long until evidence is due, in whole days, from the dispute's `evidence_due_by`. */
function dueIn(seconds) {
  if (!seconds) return "—";
  const ms = seconds * 1000 - Date.now();
  if (ms < 0) {
    const late = Math.ceil(-ms / 86400000);
    return `overdue by ${late} day${late === 1 ? "" : "s"}`;
  }
  const days = Math.floor(ms / 86400000);
  return days === 0 ? "less than a day left" : `${days} day${days === 1 ? "" : "s"} left`;
}

function disputesTable(disputes) {
  if (!disputes.length) return h("p", { class: "muted", testid: "disputes-none" }, "No open disputes.");
  return h("table", { testid: "disputes-table" },
    h("thead", {}, h("tr", {}, ["Dispute", "Payment", "Amount", "Reason", "Status", "Evidence due", "Withdrawn"].map((t) => h("th", {}, t)))),
    h("tbody", {}, disputes.map((d) => h("tr", { testid: "dispute-row", "data-dispute-id": d.id },
      h("td", {}, d.id), h("td", {}, d.payment_id), h("td", {}, money(d.amount, d.currency)), h("td", {}, d.reason || "—"),
      h("td", {}, badge(d.status)),
      h("td", { testid: "dispute-due" }, d.evidence_due_by ? time(d.evidence_due_by * 1000) + " · " : "", h("strong", {}, dueIn(d.evidence_due_by))),
      h("td", {}, money(d.withdrawn, d.currency))))));
}

function refundsTable(refunds) {
  if (!refunds.length) return h("p", { class: "muted", testid: "refunds-none" }, "No refunds yet.");
  return h("table", { testid: "refunds-table" },
    h("thead", {}, h("tr", {}, ["Made", "Refund", "Payment", "Customer", "Amount", "Status", "Reason"].map((t) => h("th", {}, t)))),
    h("tbody", {}, refunds.map((r) => h("tr", { testid: "refund-row", "data-refund-id": r.id },
      h("td", {}, time(r.created * 1000)), h("td", {}, r.id), h("td", {}, r.payment_id), h("td", {}, r.customer_id || r.user_id || "—"),
      h("td", {}, money(r.amount, r.currency)), h("td", {}, badge(r.status)),
      h("td", {}, r.failure_reason ? `${r.reason || "—"} (failed: ${r.failure_reason})` : r.reason || "—")))));
}

async function billingPage() {
  const [b, disputes, payments, report] = await Promise.all([
    api("/billing"), api("/disputes?status=open"), api("/payments?limit=50"), api("/reports/daily"),
  ]);
  return h("section", { testid: "billing-page" },
    h("h1", {}, "Billing"),
    h("h2", {}, "Daily report"),
    h("div", { testid: "daily-report" }, dailyCharts(report, state.reportTables)),
    h("h2", {}, "Open disputes"),
    disputesTable(disputes.disputes),
    h("h2", {}, "Subscriptions by status"),
    h("div", { class: "counts", testid: "subscriptions-by-status" },
      b.subscriptions_by_status.length ? b.subscriptions_by_status.map((s) => h("span", { class: "count " + s.status }, h("strong", {}, s.count), " " + s.status)) : h("span", { class: "muted" }, "No subscriptions yet.")),
    h("table", { testid: "subscriptions-table" },
      h("thead", {}, h("tr", {}, ["Subscription", "User", "Customer", "Status", "Entitled", "Price", "Period end", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, b.subscriptions.map((s) => h("tr", {},
        h("td", {}, s.id, s.account ? h("span", { class: "muted" }, " " + s.account) : ""), h("td", {}, s.user_id || "—"), h("td", {}, s.customer_id || "—"),
        h("td", {}, badge(s.status), s.source === "provisional" ? h("span", { class: "muted", title: "inferred from a checkout or invoice event until the Subscription object arrives" }, " provisional") : ""),
        h("td", { testid: "entitled" }, s.entitled ? "yes" : "no"),
        h("td", {}, s.price_id || "—"), h("td", {}, s.current_period_end ? time(s.current_period_end * 1000) : "—"), h("td", {}, time(s.updated_at)))))),
    h("h2", {}, "Paying customers without a user"),
    b.unlinked_customers.length ? h("table", { testid: "unlinked-table" },
      h("thead", {}, h("tr", {}, ["Customer", "Subscriptions", "Payments", "Last event"].map((t) => h("th", {}, t)))),
      h("tbody", {}, b.unlinked_customers.map((c) => h("tr", {},
        h("td", {}, c.customer_id), h("td", {}, c.subscriptions), h("td", {}, c.payments), h("td", {}, time(c.last_event_created * 1000))))))
      : h("p", { class: "muted", testid: "unlinked-none" }, "Every paying customer is linked to a user."),
    h("h2", {}, "Recent payments"),
    h("table", { testid: "payments-table" },
      h("thead", {}, h("tr", {}, ["Payment", "User", "Customer", "Amount", "Refunded", "Status", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, payments.payments.map((p) => h("tr", { testid: "payment-row", "data-payment-id": p.id },
        h("td", {}, p.id), h("td", {}, p.user_id || "—"), h("td", {}, p.customer_id || "—"),
        h("td", {}, money(p.amount, p.currency)), h("td", {}, p.amount_refunded ? money(p.amount_refunded, p.currency) : "—"),
        h("td", {}, badge(p.status), p.disputed ? h("span", { class: "tag fail" }, "disputed") : null), h("td", {}, time(p.updated_at)))))),
    h("h2", {}, "Recent refunds"),
    refundsTable(b.refunds),
    h("h2", {}, "Recent payment failures"),
    h("table", { testid: "failures-table" },
      h("thead", {}, h("tr", {}, ["When", "Kind", "Customer", "Object", "Amount", "Code", "Message"].map((t) => h("th", {}, t)))),
      h("tbody", {}, b.payment_failures.map((f) => h("tr", { testid: "failure-row" },
        h("td", {}, time(f.created * 1000)), h("td", {}, f.kind), h("td", {}, f.customer_id || f.user_id || "—"), h("td", {}, f.object_id || "—"),
        h("td", {}, money(f.amount, f.currency)), h("td", {}, [f.code, f.decline_code].filter(Boolean).join(" / ") || "—"),
        h("td", {}, f.message || ""))))));
}

refresh();
schedule();
