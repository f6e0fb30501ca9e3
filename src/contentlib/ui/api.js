// The client of the server's public /api (same origin): the session, JSON calls with the vendor's error shape,
// uploads to an update session's upload URL with progress, and SHA-256 in the browser.

const SESSION_KEY = "contentlib.session";
const HEADER = "vmware-api-session-id";

export class ApiError extends Error {
  constructor(status, body) {
    const messages = (body && body.messages) || [];
    const text = messages.map((m) => m.default_message).filter(Boolean).join(" ");
    super(text || (body && body.error_type) || `HTTP ${status}`);
    this.status = status;
    this.type = body && body.error_type;
  }
}

// Called when the server says the session is gone (401 on a call made with one): the app shows the login page.
let onExpired = () => {};
export function setOnExpired(fn) {
  onExpired = fn;
}

export function sessionId() {
  return sessionStorage.getItem(SESSION_KEY);
}

function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

export async function login(user, password) {
  const r = await fetch("/api/session", { method: "POST", headers: { Authorization: basic(user, password) } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  sessionStorage.setItem(SESSION_KEY, body);
  return body;
}

export async function logout() {
  const sid = sessionId();
  sessionStorage.removeItem(SESSION_KEY);
  if (sid) await fetch("/api/session", { method: "DELETE", headers: { [HEADER]: sid } }).catch(() => {});
}

// One /api call: `path` under /api, an optional JSON body; the decoded JSON answer (undefined for 204).
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const sid = sessionId();
  if (sid) headers[HEADER] = sid;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`/api${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let value;
  try {
    value = text ? JSON.parse(text) : undefined;
  } catch {
    if (r.ok) throw new Error(`${method} /api${path}: the answer is not JSON.`);
    value = null; // e.g. a proxy's error page: the status is the message
  }
  if (r.status === 401 && sid) {
    sessionStorage.removeItem(SESSION_KEY);
    onExpired();
  }
  if (!r.ok) throw new ApiError(r.status, value);
  return value;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

// PUT `file` to `uri` (an update session's upload_endpoint); progress(loaded, total) as bytes go out.
export function putFile(uri, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", uri);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => progress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        progress(file.size, file.size);
        resolve();
      } else {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        reject(new ApiError(xhr.status, body));
      }
    });
    xhr.addEventListener("error", () => reject(new Error(`The upload of ${file.name} failed (network error).`)));
    xhr.addEventListener("abort", () => reject(new Error(`The upload of ${file.name} was aborted.`)));
    xhr.send(file);
  });
}

// The lower-case hex SHA-256 of a File (WebCrypto digests whole buffers: only for moderate sizes).
export const SHA256_LIMIT = 512 * 1024 * 1024;
export async function sha256(file) {
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
