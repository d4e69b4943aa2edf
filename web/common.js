// What the viewer's pages share: the session's state, API calls, messages, element building and
// DICOM JSON helpers. app.js (the shell) and viewer.js (the image viewer) both import it, and
// neither imports the other's internals.

/** Called when the session has ended (a 401); the shell sets it to show the login page. */
let onExpired = () => {};
export function whenSessionExpires(f) {
  onExpired = f;
}

export const state = { user: null, role: null, person: null, expired: false, mustChangePassword: false };

/** Roles that may export original DICOM (the server enforces it; this only hides the action).
 * A patient may export their own studies, the only ones they can open. */
export const mayExport = (role) => role === "admin" || role === "integrator" || role === "patient";

/** Shows a message above the page (null hides it). */
export function message(text) {
  const m = document.getElementById("message");
  m.textContent = text || "";
  m.hidden = !text;
}

/** A JSON (or DICOM JSON) API call; a 401 means the session ended: back to the login page. */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  let body = options.body;
  if (body && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { ...options, headers, body, credentials: "same-origin" });
  if (response.status === 401 && path !== "/api/login") {
    onExpired();
    throw Object.assign(new Error("session expired"), { expired: true });
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error((data && (data.detail || data.title)) || `${response.status}`);
  }
  return data;
}

/** Says what failed, unless the session ended (the login page says that already). */
export function failed(what, err) {
  if (!err.expired) message(`${what}: ${err.message}`);
}

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
};
export { el };

/** The first value of a DICOM JSON attribute, as text. */
export function dv(obj, tag) {
  const a = obj && obj[tag];
  if (!a || !a.Value || !a.Value.length) return "";
  const v = a.Value[0];
  return typeof v === "object" ? (v.Alphabetic || "") : String(v);
}
export const pn = (s) => s.replace(/\^+$/, "").replace(/\^/g, ", ");
export const da = (s) => (s && s.length === 8 ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6)}` : s || "");
