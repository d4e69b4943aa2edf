// The operator's console (administrators): the nodes serving the archive with their load and
// rates, the replicas' health with the repair queue, the scrub and the background workers, what
// the tiers hold and cost with how reads decay with a study's age, retention (expiry batches to
// approve, legal holds, rejected instances), the AE table, the audit trail with filters, and a
// way to the accounts page (users, tokens, sessions). The pages that show live state read it
// again every few seconds.

import { api, el, failed, message } from "./common.js";

/** How often the live pages read their state again (the nodes' heartbeat is 5 s). */
const REFRESH_MS = 3000;

const PAGES = [
  ["nodes", "Nodes"],
  ["replicas", "Replicas and workers"],
  ["storage", "Storage and cost"],
  ["retention", "Retention"],
  ["ae", "AE table"],
  ["audit", "Audit trail"],
];

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const ago = (ms) => {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : when(ms);
};
const table = (id, heads, rows) => el("table", { class: "list console", id },
  el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
const badge = (ok, yes, no) => el("span", { class: ok ? "state ok" : "state bad" }, ok ? yes : no);

/** A bar `value / max` wide, with the value beside it. */
function bar(value, max) {
  const fill = el("span", { class: "fill" });
  fill.style.width = `${max > 0 ? Math.round((100 * value) / max) : 0}%`;
  return el("span", { class: "bar" }, el("span", { class: "track" }, fill), String(value));
}

/**
 * Shows console page `page` (nodes by default) in `main`; returns what stops its refreshing,
 * for the router to call when the page is left.
 */
export async function openConsole(main, page, params) {
  const current = PAGES.some(([p]) => p === page) ? page : "nodes";
  const body = el("div", { class: "console-body" });
  main.replaceChildren(el("div", { class: "person", id: "console" },
    el("nav", { class: "tabs" },
      PAGES.map(([p, label]) => el("a", { href: `#/console/${p}`, class: p === current ? "active" : "" }, label)),
      el("a", { href: "#/accounts", title: "Users, API tokens and sessions" }, "Users, tokens and sessions")),
    body));
  if (current === "ae") { await showAe(body); return null; }
  if (current === "audit") { await showAudit(body, params); return null; }
  if (current === "storage") { await showStorage(body); return null; }
  if (current === "retention") { await showRetention(body); return null; }
  const draw = current === "nodes" ? showNodes : showReplicas;
  let stopped = false;
  let timer = null;
  const tick = async () => {
    await draw(body);
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  tick(); // not awaited: the router holds the way to stop it before the first answer
  return () => { stopped = true; clearTimeout(timer); };
}

/** The nodes, as their heartbeats describe them, and the rates of each. */
async function showNodes(body) {
  let r;
  try {
    r = await api("/api/nodes");
  } catch (err) {
    failed("Nodes", err);
    return;
  }
  const rows = r.nodes.map((n) => el("tr", { "data-node": n.id, class: n.alive ? "" : "down" },
    el("td", {}, n.id, n.this ? el("span", { class: "this" }, " (this node)") : ""),
    el("td", {}, n.role),
    el("td", {}, badge(n.alive, "alive", "down")),
    el("td", { title: when(n.last_seen) }, ago(n.last_seen)),
    el("td", {}, n.address ? el("a", { href: n.address }, n.address) : ""),
    el("td", {}, n.version),
    el("td", {}, when(n.started_at)),
    el("td", {}, String(n.load.http_in_flight ?? "")),
    el("td", {}, String(n.load.associations ?? ""))));
  const alive = r.nodes.filter((n) => n.alive);
  const most = (k) => Math.max(1, ...alive.map((n) => n.load[k] || 0));
  const rateRows = alive.map((n) => el("tr", { "data-node": n.id },
    el("td", {}, n.id),
    el("td", {}, bar(n.load.stored_last_minute || 0, most("stored_last_minute"))),
    el("td", {}, bar(n.load.queries_last_minute || 0, most("queries_last_minute"))),
    el("td", {}, `${n.load.stored_total ?? 0} / ${n.load.queries_total ?? 0}`)));
  const sum = (k) => alive.reduce((s, n) => s + (n.load[k] || 0), 0);
  body.replaceChildren(
    el("h2", {}, `Nodes (${alive.length} of ${r.nodes.length} alive)`),
    el("p", { class: "hint" }, `A node writes a heartbeat every ${r.heartbeat_seconds} s; one not seen for ${r.alive_within_seconds} s is down, and one not seen for ${r.forget_after_seconds / 3600} h is no longer listed.`),
    table("nodes", ["Node", "Role", "State", "Last seen", "Serves", "Version", "Started", "HTTP in flight", "Associations"], rows),
    el("h2", {}, "Rates (last minute)"),
    el("p", { id: "rate-total" }, `All nodes: ${sum("stored_last_minute")} instances stored, ${sum("queries_last_minute")} queries answered`),
    table("rates", ["Node", "Instances stored", "Queries answered", "Since start (stored / queries)"], rateRows));
}

/** The replicas' health, the repair queue and the scrub; the workers and their leases. */
async function showReplicas(body) {
  let r, w;
  try {
    [r, w] = await Promise.all([api("/api/replicas"), api("/api/workers")]);
  } catch (err) {
    failed("Replicas", err);
    return;
  }
  const up = r.replicas.filter((x) => x.reachable).length;
  const replicaRows = r.replicas.map((x) => el("tr", { "data-replica": x.replica },
    el("td", {}, String(x.replica)), el("td", {}, x.url), el("td", {}, badge(x.reachable, "reachable", "unreachable"))));
  const s = r.scrub;
  const scrub = s
    ? `pass ${s.pass}: ${s.done} blobs checked${s.last_pass_blobs ? ` of about ${s.last_pass_blobs}` : ""}` +
      (s.pass_started_at ? `, since ${when(s.pass_started_at)}` : "") +
      (s.last_pass_finished_at ? `; last pass finished ${when(s.last_pass_finished_at)}` : "")
    : "no scrub pass yet";
  const leases = Object.fromEntries(w.leases.map((l) => [l.name, l]));
  const workerRows = w.workers.map((x) => {
    const lease = leases[x.name];
    const live = lease && lease.expires_at > Date.now();
    return el("tr", { "data-worker": x.name },
      el("td", {}, x.name), el("td", {}, x.state), el("td", {}, String(x.rounds)), el("td", {}, String(x.failures)),
      el("td", {}, live ? `${lease.holder} until ${new Date(lease.expires_at).toLocaleTimeString()}` : lease ? "free" : ""),
      el("td", {}, x.last_error || x.detail || ""));
  });
  body.replaceChildren(
    el("h2", {}, `Replicas (${up} of ${r.replicas.length} reachable, write quorum ${r.write_quorum})`),
    table("replicas", ["#", "URL", "Health"], replicaRows),
    el("p", { id: "repair-queue" }, `Repair queue: ${r.repair_queue} ${r.repair_queue === 1 ? "copy" : "copies"} waiting`),
    el("p", { id: "scrub" }, `Scrub: ${scrub}`),
    el("h2", {}, `Workers of node ${w.node.id} (${w.node.role})`),
    table("workers", ["Worker", "State", "Rounds", "Failures", "Lease holder", "Last said"], workerRows));
}

const GIB = 1024 ** 3;
const size = (bytes) => (bytes >= GIB ? `${(bytes / GIB).toFixed(2)} GiB`
  : bytes >= 1024 ** 2 ? `${(bytes / 1024 ** 2).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);
const money = (x) => (x === null || x === undefined ? "no price set" : `${x < 1 ? x.toFixed(4) : x.toFixed(2)} a month`);

/** What each tier and store holds and costs; reads per study against the study's age. */
async function showStorage(body) {
  let s, d;
  try {
    [s, d] = await Promise.all([api("/api/storage"), api("/api/storage/decay")]);
  } catch (err) {
    failed("Storage", err);
    return;
  }
  const storeRows = (tier, list) => list.map((x, i) => el("tr", { "data-store": `${tier}-${i + 1}` },
    el("td", {}, tier), el("td", {}, x.url), el("td", {}, size(x.bytes)),
    el("td", {}, x.price_per_gib_month === null ? "" : String(x.price_per_gib_month)),
    el("td", {}, money(x.monthly_cost))));
  const most = Math.max(0, ...d.buckets.map((b) => b.reads_per_study));
  const shown = d.buckets.filter((b) => b.studies > 0);
  const decayRows = shown.map((b) => el("tr", { "data-age": b.from_months },
    el("td", {}, `${b.from_months}–${b.to_months} months`), el("td", {}, String(b.studies)), el("td", {}, String(b.reads)),
    el("td", { class: "decay" }, bar(Number(b.reads_per_study.toFixed(3)), most))));
  const cold = s.cold_stores.length
    ? `Cold: ${size(s.cold_bytes)} of data in ${s.cold_studies} studies, as ${s.data_shards} + ${s.parity_shards} shards (${money(s.cold_monthly_cost)})`
    : "Cold: no cold tier is configured (tiers.stores)";
  body.replaceChildren(
    el("h2", {}, "Storage and cost"),
    el("p", { id: "tier-hot" }, `Hot: ${size(s.hot_bytes)} of data, a whole copy on each of ${s.replicas.length} replicas (${money(s.hot_monthly_cost)})`),
    el("p", { id: "tier-cold" }, cold),
    table("stores", ["Tier", "Store", "Holds", "Price per GiB-month", "Projected cost"],
      [...storeRows("hot", s.replicas), ...storeRows("cold", s.cold_stores)]),
    el("h2", {}, "Reads per study by age"),
    el("p", { id: "decay-summary", class: "hint" },
      `From the audit trail: ${d.reads} study-days read, of ${d.studies_read} studies. ` +
      (d.half_life_months ? `Past the first year reads per study halve every ${d.half_life_months.toFixed(1)} months.`
        : "Too few reads past the first year to fit a half-life.")),
    table("decay", ["Study age", "Studies that reached it", "Reads", "Reads per study"], decayRows));
}

/** Expiry batches (approve or dismiss), legal holds (place, release), rejected instances. */
async function showRetention(body) {
  let batches, holds, rejected;
  try {
    [batches, holds, rejected] = await Promise.all([api("/api/expiry"), api("/api/holds"), api("/api/rejections")]);
  } catch (err) {
    failed("Retention", err);
    return;
  }
  const again = (what, call) => async () => {
    try { await call(); message(null); await showRetention(body); } catch (err) { failed(what, err); }
  };
  const detail = el("div", { id: "batch-detail" });
  const openBatch = (id) => async () => {
    try {
      const r = await api(`/api/expiry/${id}`);
      detail.replaceChildren(el("h3", {}, `Batch ${id}: ${r.batch.state}`),
        table("batch-studies", ["Study", "Retained until", "Instances", "Size", "Outcome"],
          r.studies.map((x) => el("tr", { "data-study": x.study_uid },
            el("td", {}, x.study_uid), el("td", {}, x.retained_until), el("td", {}, String(x.instances)),
            el("td", {}, size(x.bytes)), el("td", {}, x.outcome)))));
    } catch (err) { failed("Batch", err); }
  };
  const batchRows = batches.map((b) => el("tr", { "data-batch": b.id },
    el("td", {}, el("a", { href: "#", onclick: (e) => { e.preventDefault(); openBatch(b.id)(); } }, String(b.id))),
    el("td", {}, b.state), el("td", {}, when(b.proposed_at)), el("td", {}, String(b.studies)), el("td", {}, size(b.bytes)),
    el("td", {}, b.decided_by ? `${b.decided_by}, ${when(b.decided_at)}` : ""),
    el("td", {}, b.state === "proposed" ? [
      el("button", { type: "button", class: "approve", onclick: again("Approve", () => (confirm(`Delete the ${b.studies} studies of batch ${b.id}?`)
        ? api(`/api/expiry/${b.id}/approve`, { method: "POST" }) : null)) }, "Approve"),
      el("button", { type: "button", class: "dismiss", onclick: again("Dismiss", () => api(`/api/expiry/${b.id}/dismiss`, { method: "POST" })) }, "Dismiss"),
    ] : "")));
  const holdRows = holds.map((h) => el("tr", { "data-hold": h.id },
    el("td", {}, String(h.id)), el("td", {}, h.person ? `person ${h.person}` : `study ${h.study_uid}`),
    el("td", {}, h.reason), el("td", {}, `${h.placed_by}, ${when(h.placed_at)}`),
    el("td", {}, el("button", { type: "button", class: "release",
      onclick: again("Release", () => (confirm(`Release hold ${h.id}?`) ? api(`/api/holds/${h.id}/release`, { method: "POST" }) : null)) }, "Release"))));
  const form = el("form", { class: "search", id: "place-hold" },
    el("label", {}, "On", el("select", { name: "on" }, el("option", { value: "study" }, "a study (UID)"), el("option", { value: "person" }, "a person (id)"))),
    el("label", {}, "Which", el("input", { name: "target", required: true })),
    el("label", {}, "Reason", el("input", { name: "reason", required: true })),
    el("button", { type: "submit" }, "Place hold"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    again("Place hold", () => api("/api/holds", { method: "POST", body: { [f.on]: f.target.trim(), reason: f.reason.trim() } }))();
  });
  const rejectedRows = rejected.slice(0, 200).map((r) => el("tr", { "data-sop": r.sop_uid },
    el("td", {}, r.sop_uid), el("td", {}, r.study_uid), el("td", {}, r.code), el("td", {}, when(r.rejected_at))));
  body.replaceChildren(
    el("h2", {}, "Expiry"),
    el("p", { class: "hint" }, "A batch lists studies past retention and under no hold; nothing is deleted until it is approved, and each study is checked again when its turn comes."),
    el("button", { type: "button", id: "propose", onclick: again("Propose", () => api("/api/expiry", { method: "POST" })) }, "Propose a batch now"),
    table("batches", ["Batch", "State", "Proposed", "Studies", "Size", "Decided", ""], batchRows),
    detail,
    el("h2", {}, `Legal holds (${holds.length} in force)`),
    table("holds", ["#", "On", "Reason", "Placed", ""], holdRows), form,
    el("h2", {}, `Rejected instances (${rejected.length})`),
    el("p", { class: "hint" }, "Taken out of use by rejection notes; purged after the configured delay, unless retention or a hold keeps them."),
    table("rejected", ["Instance", "Study", "Title", "Rejected"], rejectedRows));
}

/** The C-MOVE destinations: listed, added, removed. */
async function showAe(body) {
  let list;
  try {
    list = await api("/api/ae");
  } catch (err) {
    failed("AE table", err);
    return;
  }
  const again = (what, call) => async () => {
    try { await call(); message(null); await showAe(body); } catch (err) { failed(what, err); }
  };
  const rows = list.map((a) => el("tr", { "data-ae": a.aet },
    el("td", {}, a.aet), el("td", {}, a.host), el("td", {}, String(a.port)), el("td", {}, a.tls ? "TLS" : ""),
    el("td", {}, a.managed ? el("button", { type: "button", class: "remove",
      onclick: again("Remove", () => (confirm(`Remove ${a.aet}?`)
        ? api(`/api/ae/${encodeURIComponent(a.aet)}`, { method: "DELETE" }) : null)) }, "Remove")
      : "strata.toml")));
  const form = el("form", { class: "search", id: "add-ae" },
    el("label", {}, "AE title", el("input", { name: "aet", required: true, maxlength: 16 })),
    el("label", {}, "Host", el("input", { name: "host", required: true })),
    el("label", {}, "Port", el("input", { name: "port", type: "number", min: 1, max: 65535, required: true })),
    el("button", { type: "submit" }, "Add or change"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    again("Add AE", () => api(`/api/ae/${encodeURIComponent(f.aet.trim())}`,
      { method: "PUT", body: { host: f.host.trim(), port: Number(f.port) } }))();
  });
  body.replaceChildren(el("h2", {}, `AE table (${list.length})`),
    table("ae", ["AE title", "Host", "Port", "", ""], rows), form);
}

const AUDIT_FILTERS = ["actor", "action", "patient_id", "since", "until"];
const localTime = (ms) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
};

/** The audit trail, newest first, filtered as the form (and the URL) says. */
async function showAudit(body, params) {
  const value = (k) => params.get(k) || "";
  // The trail is read oldest first: by default the last day of it.
  const since = params.has("since") ? value("since") : localTime(Date.now() - 86400000);
  const input = (name, label, attrs = {}) =>
    el("label", {}, label, el("input", { name, value: name === "since" ? since : value(name), ...attrs }));
  const form = el("form", { class: "search", id: "audit-filter" },
    input("actor", "Actor"), input("action", "Action"), input("patient_id", "Patient ID"),
    input("since", "Since", { type: "datetime-local" }), input("until", "Until", { type: "datetime-local" }),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) p.set(k, v);
    location.hash = `#/console/audit?${p}`;
  });
  const q = new URLSearchParams({ limit: "1000", order: "newest" });
  for (const k of AUDIT_FILTERS) {
    const v = k === "since" ? since : value(k);
    if (!v) continue;
    q.set(k, k === "since" || k === "until" ? String(new Date(v).getTime()) : v);
  }
  let events;
  try {
    events = await api(`/api/audit?${q}`);
  } catch (err) {
    body.replaceChildren(form);
    failed("Audit trail", err);
    return;
  }
  const rows = events.map((e) => el("tr", { "data-event": e.id, class: e.outcome === "success" ? "" : "down" },
    el("td", {}, String(e.id)), el("td", {}, when(e.at)), el("td", {}, e.actor), el("td", {}, e.role),
    el("td", {}, e.action), el("td", {}, e.outcome), el("td", {}, e.patient_id || ""),
    el("td", {}, e.remote || ""), el("td", {}, e.detail || "")));
  body.replaceChildren(form, el("h2", {}, `Audit trail (${events.length} ${events.length === 1 ? "event" : "events"}, newest first)`),
    table("audit", ["#", "When", "Actor", "Role", "Action", "Outcome", "Patient", "From", "Detail"], rows));
}
