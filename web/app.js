// The viewer's shell: login, the study list, the person view, the review queue, changing one's
// password, the administrators' accounts page, and routing between them (the URL hash). The
// image viewer itself is viewer.js, the operator's console console.js.

import { api, da, dv, el, failed, mayExport, message, pn, state, whenSessionExpires } from "./common.js";
import { openConsole } from "./console.js";
import { openViewer } from "./viewer.js";

const main = document.getElementById("main");

function sessionExpired() {
  // Said until the next login, whatever navigation happens meanwhile.
  if (state.user) state.expired = true;
  state.user = null;
  showLogin();
}

whenSessionExpires(sessionExpired);

function showLogin() {
  document.getElementById("bar").hidden = true;
  main.replaceChildren();
  if (state.expired) message("Your session has expired. Please log in again.");
  const user = el("input", { name: "user", autocomplete: "username", required: true, "aria-label": "User" });
  const password = el("input", { name: "password", type: "password", autocomplete: "current-password", required: true, "aria-label": "Password" });
  const form = el("form", { class: "login", id: "login" },
    el("h1", {}, "Strata"),
    el("label", {}, "User", user),
    el("label", {}, "Password", password),
    el("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/login", { method: "POST", body: { user: user.value, password: password.value } });
      message(null);
      signedIn(await api("/api/me")); // the whole principal: a patient's person too
      if (!location.hash || location.hash === "#/login") location.hash = "#/studies";
      route(); // a password that must be changed is asked for first (route says so)
    } catch (err) {
      message(`Login failed: ${err.message}`);
    }
  });
  main.append(form);
  user.focus();
}

function signedIn(who) {
  state.expired = false;
  state.user = who.user;
  state.role = who.role;
  state.person = who.person || null;
  document.getElementById("bar").hidden = false;
  document.getElementById("who").textContent = `${who.user} (${who.role})`;
  document.getElementById("nav-review").hidden = who.role !== "admin";
  document.getElementById("nav-accounts").hidden = who.role !== "admin";
  document.getElementById("nav-console").hidden = who.role !== "admin";
  state.mustChangePassword = !!who.must_change_password;
}

// ---------------------------------------------------------------------------------------------
// Passwords and accounts

/** Changing one's own password; the only page a session whose password must change may see. */
function showPassword() {
  const field = (name, label, autocomplete) =>
    el("label", {}, label, el("input", { name, type: "password", autocomplete, required: true }));
  const form = el("form", { class: "login", id: "password" },
    el("h2", {}, "Change your password"),
    state.mustChangePassword ? el("p", {}, "Your password must be changed before you go on.") : "",
    field("old", "Current password", "current-password"),
    field("new", "New password (at least 8 characters)", "new-password"),
    field("again", "New password again", "new-password"),
    el("button", { type: "submit" }, "Change password"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    if (f.get("new") !== f.get("again")) { message("The new passwords differ."); return; }
    try {
      await api(`/api/users/${encodeURIComponent(state.user)}/password`,
        { method: "POST", body: { old_password: f.get("old"), password: f.get("new") } });
      state.mustChangePassword = false;
      message("Your password was changed.");
      if (location.hash === "#/studies") route();
      else location.hash = "#/studies";
    } catch (err) {
      failed("The password was not changed", err);
    }
  });
  main.replaceChildren(form);
}

const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");

/** The administrators' page: users, API tokens and sessions, each managed in place. */
async function showAccounts() {
  let users, tokens, sessions;
  try {
    [users, tokens, sessions] = await Promise.all(
      ["/api/users", "/api/tokens", "/api/sessions"].map((p) => api(p)));
  } catch (err) {
    failed("Accounts", err);
    return;
  }
  const act = (what, call) => async () => {
    try { await call(); showAccounts(); } catch (err) { failed(what, err); }
  };
  const user = (name) => `/api/users/${encodeURIComponent(name)}`;
  const userRows = users.map((u) => el("tr", { "data-user": u.name },
    el("td", {}, u.name), el("td", {}, u.role), el("td", {}, u.person || ""),
    el("td", {}, [u.disabled ? "disabled" : "", u.must_change_password ? "must change password" : "",
      u.issuer ? `issuer ${u.issuer}` : ""]
      .filter(Boolean).join(", ")),
    el("td", {},
      el("button", { type: "button", class: "toggle", onclick: act(`${u.name}`, () =>
        api(`${user(u.name)}/${u.disabled ? "enable" : "disable"}`, { method: "POST" })) },
      u.disabled ? "Enable" : "Disable"),
      el("button", { type: "button", class: "reset", onclick: act("Password", () => {
        const pw = prompt(`New password for ${u.name} (they must change it at sign-in)`);
        return pw ? api(`${user(u.name)}/password`, { method: "POST", body: { password: pw } }) : null;
      }) }, "Set password"),
      el("button", { type: "button", class: "remove", onclick: act("Remove", () =>
        confirm(`Remove ${u.name} with their tokens and sessions?`)
          ? api(user(u.name), { method: "DELETE" }) : null) }, "Remove"))));
  const addForm = el("form", { class: "search", id: "add-user" },
    el("label", {}, "Name", el("input", { name: "name", required: true, pattern: "[A-Za-z0-9._@\\-]{1,64}" })),
    el("label", {}, "Role", el("select", { name: "role" },
      ["radiologist", "integrator", "modality", "patient", "admin"].map((r) => el("option", { value: r }, r)))),
    el("label", {}, "Person (patients)", el("input", { name: "person" })),
    el("label", { title: "Issuer of the patient keys of what the user stores, whatever the files say" },
      "Issuer (uploads)", el("input", { name: "issuer", maxlength: 64 })),
    el("label", {}, "Password", el("input", { name: "password", type: "password", required: true, autocomplete: "new-password" })),
    el("button", { type: "submit" }, "Add user"));
  addForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(addForm));
    if (!f.person) delete f.person;
    if (!f.issuer) delete f.issuer;
    act("Add user", () => api("/api/users", { method: "POST", body: f }))();
  });
  const tokenRows = tokens.map((t) => el("tr", { "data-token": t.id },
    el("td", {}, String(t.id)), el("td", {}, t.user), el("td", {}, t.label || ""),
    el("td", {}, when(t.created_at)),
    el("td", {}, t.revoked_at ? `revoked ${when(t.revoked_at)}` : t.expires_at ? `expires ${when(t.expires_at)}` : "never expires"),
    el("td", {}, t.revoked_at ? "" : el("button", { type: "button", class: "revoke",
      onclick: act("Revoke", () => api(`/api/tokens/${t.id}`, { method: "DELETE" })) }, "Revoke"))));
  const shown = el("p", { id: "new-token" });
  const tokenForm = el("form", { class: "search", id: "add-token" },
    el("label", {}, "User", el("input", { name: "user", required: true })),
    el("label", {}, "Label", el("input", { name: "label" })),
    el("label", {}, "Days", el("input", { name: "days", type: "number", min: 1, max: 3650, value: 90 })),
    el("button", { type: "submit" }, "Create token"));
  tokenForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(tokenForm));
    try {
      const t = await api("/api/tokens", { method: "POST",
        body: { user: f.user, label: f.label || undefined, expires_in_days: Number(f.days) } });
      await showAccounts();
      document.getElementById("new-token").textContent =
        `Token ${t.id} for ${t.user} (shown once, copy it now): ${t.token}`;
    } catch (err) {
      failed("Token", err);
    }
  });
  const sessionRows = sessions.map((s) => el("tr", { "data-session": s.id },
    el("td", {}, s.id), el("td", {}, s.user), el("td", {}, when(s.created_at)), el("td", {}, when(s.expires_at)),
    el("td", {}, el("button", { type: "button", class: "end",
      onclick: act("End session", () => api(`/api/sessions/${s.id}`, { method: "DELETE" })) }, "End"))));
  const table = (id, heads, rows) => el("table", { class: "list", id },
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
  main.replaceChildren(el("div", { class: "person", id: "accounts" },
    el("h2", {}, `Users (${users.length})`),
    table("users", ["Name", "Role", "Person", "State", ""], userRows), addForm,
    el("h2", {}, "API tokens"), table("tokens", ["Id", "User", "Label", "Created", "State", ""], tokenRows),
    tokenForm, shown,
    el("h2", {}, "Sessions"), table("sessions", ["Id", "User", "Since", "Until", ""], sessionRows)));
}

// ---------------------------------------------------------------------------------------------
// Study list

const STUDY_FIELDS = ["00080020", "00080030", "00080050", "00080061", "00081030", "00100010",
  "00100020", "00100021", "00100030", "0020000D", "00201208"];
const COLUMNS = [
  ["Patient", "00100010", pn], ["Patient ID", "00100020"], ["Birth date", "00100030", da],
  ["Study date", "00080020", da], ["Modalities", "00080061"], ["Description", "00081030"],
  ["Accession", "00080050"], ["Images", "00201208"],
];
const PAGE = 25;

async function showStudies(params) {
  const form = el("form", { class: "search", id: "search" },
    el("label", {}, "Patient name", el("input", { name: "name", value: params.get("name") || "" })),
    el("label", {}, "Patient ID", el("input", { name: "pid", value: params.get("pid") || "" })),
    el("label", {}, "Accession", el("input", { name: "acc", value: params.get("acc") || "" })),
    el("label", {}, "From", el("input", { name: "from", type: "date", value: params.get("from") || "" })),
    el("label", {}, "To", el("input", { name: "to", type: "date", value: params.get("to") || "" })),
    el("label", {}, "Modality", el("select", { name: "mod" },
      ["", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "OT"].map((m) =>
        el("option", { value: m, selected: params.get("mod") === m }, m || "any")))),
    el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    location.hash = `#/studies?${p}`;
  });
  const table = el("table", { class: "list", id: "studies" });
  const pager = el("div", { class: "pager" });
  main.replaceChildren(form, table, pager);

  const q = new URLSearchParams();
  if (params.get("name")) { q.set("PatientName", `${params.get("name")}*`); q.set("fuzzymatching", "true"); }
  if (params.get("pid")) q.set("PatientID", params.get("pid"));
  if (params.get("acc")) q.set("AccessionNumber", params.get("acc"));
  const from = (params.get("from") || "").replaceAll("-", "");
  const to = (params.get("to") || "").replaceAll("-", "");
  if (from || to) q.set("StudyDate", `${from}-${to}`);
  if (params.get("mod")) q.set("ModalitiesInStudy", params.get("mod"));
  const offset = Number(params.get("offset") || 0);
  q.set("limit", PAGE + 1);
  q.set("offset", offset);
  for (const f of STUDY_FIELDS) q.append("includefield", f);
  let studies;
  try {
    studies = (await api(`/dicomweb/studies?${q}`, { headers: { Accept: "application/dicom+json" } })) || [];
  } catch (err) {
    failed("Search failed", err);
    return;
  }
  const more = studies.length > PAGE;
  studies = studies.slice(0, PAGE);
  let sort = { col: 3, dir: -1 };
  const draw = () => {
    const [, tag] = COLUMNS[sort.col];
    studies.sort((a, b) => dv(a, tag).localeCompare(dv(b, tag), undefined, { numeric: true }) * sort.dir);
    const head = el("tr", {}, COLUMNS.map(([label], i) => el("th", {
      onclick: () => { sort = { col: i, dir: sort.col === i ? -sort.dir : 1 }; draw(); },
    }, label + (sort.col === i ? (sort.dir > 0 ? " ▲" : " ▼") : ""))), el("th", {}, ""));
    const rows = studies.map((s) => {
      const uid = dv(s, "0020000D");
      return el("tr", { "data-study": uid, onclick: () => { location.hash = `#/study/${uid}`; } },
        COLUMNS.map(([, tag, f]) => el("td", {}, (f || String)(dv(s, tag)))),
        el("td", {}, el("a", {
          href: "#", class: "person-link",
          onclick: async (e) => {
            e.preventDefault(); e.stopPropagation();
            // A patient's studies are all their own person's; staff look the person up.
            if (state.person) { location.hash = `#/person/${state.person}`; return; }
            try {
              const found = await api(`/api/persons?study=${encodeURIComponent(uid)}`);
              if (found.length) location.hash = `#/person/${found[0].id}`;
            } catch (err) {
              failed("Person", err);
            }
          },
        }, "person")));
    });
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  };
  draw();
  const page = (o) => { const p = new URLSearchParams(params); p.set("offset", o); location.hash = `#/studies?${p}`; };
  pager.append(
    el("button", { type: "button", disabled: offset === 0, onclick: () => page(Math.max(0, offset - PAGE)) }, "‹ Previous"),
    el("span", {}, studies.length ? `${offset + 1}–${offset + studies.length}` : "No studies"),
    el("button", { type: "button", disabled: !more, onclick: () => page(offset + PAGE) }, "Next ›"));
}

// ---------------------------------------------------------------------------------------------
// Person view and review queue

async function showPerson(id) {
  let p;
  try {
    p = await api(`/api/persons/${id}`);
  } catch (err) {
    failed(`Person ${id}`, err);
    return;
  }
  const view = el("div", { class: "person", id: "person" },
    el("h2", {}, p.identifiers.length ? pn(p.identifiers[0].name || "") : id),
    p.merged_into ? el("p", {}, "Merged into ", el("a", { href: `#/person/${p.merged_into}` }, p.merged_into)) : "",
    el("h3", {}, "Identities"),
    el("table", { class: "list identities" }, el("tbody", {}, p.identifiers.map((i) =>
      el("tr", {}, el("td", {}, i.issuer), el("td", {}, i.patient_id), el("td", {}, pn(i.name || "")),
        el("td", {}, da(i.birth_date)), el("td", {}, i.sex || ""), el("td", {}, i.manual ? "linked by hand" : "matched"))))),
    el("h3", {}, `Studies (${p.studies.length})`),
    mayExport(state.role) && p.studies.length
      ? el("p", {}, el("a", { href: `/api/export?person=${encodeURIComponent(id)}`, download: `person-${id}.zip`, id: "export-person" },
        "Download the whole record (ZIP: DICOM media with a page of pictures)"))
      : "",
    el("ul", { class: "timeline" }, p.studies.map((s) =>
      el("li", { "data-study": s.study_uid },
        el("a", { href: `#/study/${s.study_uid}` }, `${da(s.study_date)} ${s.modalities} ${s.description || ""}`),
        ` — ${s.issuer} ${s.patient_id}, ${s.num_instances} images`))),
    // A patient's own view has no link history (it names other persons and staff).
    p.history && p.history.length ? [el("h3", {}, "Link history"),
      el("ul", {}, p.history.map((h) => el("li", {},
        `${new Date(h.at).toLocaleString()} ${h.action} by ${h.actor}` +
        (h.identifier ? ` (${h.identifier.issuer} ${h.identifier.patient_id})` : ""))))] : "",
    state.role === "admin" ? el("p", {}, el("a", { href: "#/review" }, "Open the review queue")) : "",
    mayIssueLetters(state.role) && p.studies.length ? el("section", { id: "send" }) : "",
    mayIssueLetters(state.role) ? el("section", { id: "letters" }) : "");
  main.replaceChildren(view);
  if (mayIssueLetters(state.role)) {
    showLetters(id);
    if (p.studies.length) showSend(p.studies);
  }
}

// ---------------------------------------------------------------------------------------------
// Sending to another provider and sharing with one (admin, integrator: the roles that may take
// original objects away)

/** How often a send under way is read again. */
const SEND_POLL_MS = 1000;

async function showSend(studies) {
  const section = document.getElementById("send");
  if (!section) return;
  let aes, peers;
  try {
    [aes, peers] = await Promise.all([api("/api/ae"), api("/api/dicomweb-peers")]);
  } catch (err) {
    failed("Send", err);
    return;
  }
  const picks = studies.map((s) => el("label", { class: "pick" },
    el("input", { type: "checkbox", name: "study", value: s.study_uid, checked: true }),
    ` ${da(s.study_date)} ${s.modalities} ${s.description || ""}`));
  const target = el("select", { name: "to", id: "send-to" },
    aes.map((a) => el("option", { value: `ae:${a.aet}` }, `${a.aet} (DICOM, ${a.host}:${a.port})`)),
    peers.map((w) => el("option", { value: `dicomweb:${w.name}` }, `${w.name} (DICOMweb, ${w.url})`)));
  const hours = el("input", { type: "number", name: "hours", id: "share-hours", min: "1", max: "2160", value: "72" });
  const status = el("div", { id: "send-status" });
  const chosen = () => [...section.querySelectorAll("input[name=study]:checked")].map((i) => i.value);
  const follow = async (id) => {
    for (;;) {
      let v;
      try {
        v = await api(`/api/sends/${id}`);
      } catch (err) {
        failed("Send", err);
        return;
      }
      status.replaceChildren(el("p", { "data-send": id, "data-state": v.state },
        `Send ${id} to ${v.target}: ${v.state}, ${v.sent} of ${v.total} sent` + (v.failed ? `, ${v.failed} failed` : "")),
      v.failed ? el("ul", {}, v.items.filter((i) => i.outcome === "failed").map((i) => el("li", {}, `${i.sop_uid}: ${i.error || ""}`))) : "");
      if (v.state === "done" || v.state === "failed") return;
      await new Promise((resolve) => setTimeout(resolve, SEND_POLL_MS));
    }
  };
  const send = async () => {
    const [kind, name] = target.value.split(/:(.*)/s);
    try {
      const job = await api("/api/sends", { method: "POST", body: { studies: chosen(), to: { [kind]: name } } });
      message(null);
      await follow(job.id);
    } catch (err) {
      failed("Send", err);
    }
  };
  const share = async () => {
    try {
      const made = await api("/api/shares", { method: "POST", body: { studies: chosen(), valid_hours: Number(hours.value) } });
      message(null);
      status.replaceChildren(el("p", {}, "Read-only DICOMweb token for the receiving system (shown once; revocable): ",
        el("code", { id: "share-token" }, made.token)));
    } catch (err) {
      failed("Share", err);
    }
  };
  section.replaceChildren(
    el("h3", {}, "Send or share"),
    el("div", { class: "picks" }, picks),
    el("p", {}, "To ", target, " ",
      el("button", { type: "button", id: "send-button", disabled: !aes.length && !peers.length, onclick: send }, "Send")),
    el("p", {}, "Or a read-only DICOMweb token for ", hours, " hours ",
      el("button", { type: "button", id: "share-button", onclick: share }, "Share")),
    status);
}

// ---------------------------------------------------------------------------------------------
// Access letters: a patient's copy without an account (admin, integrator)

function mayIssueLetters(role) {
  return role === "admin" || role === "integrator";
}

async function showLetters(person) {
  const section = document.getElementById("letters");
  if (!section) return;
  let letters;
  try {
    letters = await api(`/api/letters?person=${encodeURIComponent(person)}`);
  } catch (err) {
    failed("Access letters", err);
    return;
  }
  const day = (ms) => new Date(ms).toISOString().slice(0, 10);
  section.replaceChildren(
    el("h3", {}, "Access letters"),
    el("p", {}, el("button", { type: "button", id: "issue-letter", onclick: () => issueLetter(person) },
      "Issue an access letter (printed; shows its code and passcode once)")),
    el("table", { class: "list" }, el("tbody", {}, letters.map((l) =>
      el("tr", {}, el("td", {}, `Letter ${l.id}`), el("td", {}, `issued ${day(l.issued_at)} by ${l.issued_by}`),
        el("td", {}, l.revoked_at ? `revoked ${day(l.revoked_at)}` : `valid until ${day(l.expires_at)}`),
        el("td", {}, `${l.downloads} download(s)`),
        el("td", {}, l.revoked_at ? "" : el("button", { type: "button", onclick: () => revokeLetter(person, l.id) }, "Revoke")))))));
}

async function issueLetter(person) {
  const response = await fetch("/api/letters", {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "text/html", "Content-Type": "application/json" },
    body: JSON.stringify({ person }),
  });
  const text = await response.text();
  if (!response.ok) {
    let detail = "";
    try {
      detail = JSON.parse(text).detail;
    } catch {
      detail = text;
    }
    message(`The letter was not issued: ${detail || response.status}`);
    return;
  }
  window.open(URL.createObjectURL(new Blob([text], { type: "text/html" })), "_blank");
  showLetters(person);
}

async function revokeLetter(person, id) {
  try {
    await api(`/api/letters/${id}/revoke`, { method: "POST" });
  } catch (err) {
    failed(`Letter ${id} was not revoked`, err);
  }
  showLetters(person);
}

async function showReview() {
  let items;
  try {
    items = await api("/api/mpi/review");
  } catch (err) {
    failed("Review queue", err);
    return;
  }
  const list = el("table", { class: "list", id: "review" }, el("tbody", {}, items.map((r) =>
    el("tr", {},
      el("td", {}, `${r.identifier.issuer} ${r.identifier.patient_id}`),
      el("td", {}, pn(r.identifier.name || "")), el("td", {}, da(r.identifier.birth_date)),
      el("td", {}, r.candidates.map((c) => el("div", {},
        el("a", { href: `#/person/${c.person}` }, c.person), ` score ${Number(c.score).toFixed(1)} `,
        el("button", { type: "button", onclick: () => decide(r.id, { decision: "accept", person: c.person }) }, "Same person")))),
      el("td", {}, el("button", { type: "button", onclick: () => decide(r.id, { decision: "reject" }) }, "Different person"))))));
  main.replaceChildren(el("div", { class: "person" }, el("h2", {}, `Review queue (${items.length})`), list));
}

async function decide(id, body) {
  try {
    await api(`/api/mpi/review/${id}`, { method: "POST", body });
    showReview();
  } catch (err) {
    failed("The decision was not made", err);
  }
}

// ---------------------------------------------------------------------------------------------

let leaveView = null;

async function route() {
  if (leaveView) { leaveView(); leaveView = null; }
  if (!state.user) {
    try {
      signedIn(await api("/api/me"));
    } catch {
      return;
    }
  }
  const [path, query] = (location.hash.slice(1) || "/studies").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query || "");
  if (state.mustChangePassword || parts[0] === "password") showPassword();
  else if (parts[0] === "accounts") await showAccounts();
  else if (parts[0] === "console") leaveView = await openConsole(main, parts[1], params);
  else if (parts[0] === "person" && parts[1]) await showPerson(parts[1]);
  else if (parts[0] === "review") await showReview();
  else if (parts[0] === "study" && parts[1]) leaveView = await openViewer(main, parts[1]);
  else await showStudies(params);
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/logout", { method: "POST" }); } catch { /* ended anyway */ }
  state.user = null;
  message(null);
  location.hash = "#/login";
  showLogin();
});
window.addEventListener("hashchange", () => { message(null); route(); });
route();
