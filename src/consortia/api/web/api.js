// Shared by the pages: DOM helpers (values only ever through textContent), the API calls, and the
// signed session (a grant from `consortia api login`, kept in sessionStorage for this tab only).

// -- tiny DOM helpers ---------------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);

export function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

export function link(href, text) {
  return el("a", text, { href });
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function short(hex, n = 12) {
  const s = String(hex || "");
  return s.length > n ? s.slice(0, n) + "…" : s;
}

export function fmtTime(ms) {
  if (typeof ms !== "number" || ms <= 0) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");
}

export function fmtAge(ms) {
  if (typeof ms !== "number" || ms <= 0) return "—";
  let s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s ago`;
  s = Math.round(s / 60);
  if (s < 120) return `${s} min ago`;
  return `${Math.round(s / 60)} h ago`;
}

// Amounts are integer fen (1/100 yuan).
export function fmtYuan(fen) {
  if (typeof fen !== "number") return "—";
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  const yuan = Math.floor(abs / 100).toLocaleString("en-US");
  return `${sign}¥${yuan}.${String(abs % 100).padStart(2, "0")}`;
}

export function fmtNum(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

export function kvRows(table, rows) {
  const body = table.tBodies[0];
  clear(body);
  for (const [key, value] of rows) {
    const tr = el("tr");
    tr.appendChild(el("th", key));
    const td = el("td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === undefined || value === null ? "—" : String(value);
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

// A table body from rows of cells; a cell is a value, a Node, or {text, cls, title}.
export function fillTable(table, rows, empty) {
  const body = table.tBodies[0];
  clear(body);
  const width = table.tHead ? table.tHead.rows[0].cells.length : 1;
  if (!rows.length) {
    const tr = el("tr", undefined, { class: "empty" });
    tr.appendChild(el("td", empty || "none", { colspan: width, class: "muted" }));
    body.appendChild(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr");
    for (const cell of row.cells) {
      const td = el("td");
      if (cell instanceof Node) td.appendChild(cell);
      else if (cell !== null && typeof cell === "object") {
        td.textContent = cell.text === undefined || cell.text === null ? "—" : String(cell.text);
        if (cell.cls) td.className = cell.cls;
        if (cell.title) td.title = String(cell.title);
      } else td.textContent = cell === undefined || cell === null ? "—" : String(cell);
      tr.appendChild(td);
    }
    for (const [k, v] of Object.entries(row.data || {})) tr.dataset[k] = String(v);
    body.appendChild(tr);
  }
}

export function code(text, n) {
  return el("code", n ? short(text, n) : text, { title: String(text || "") });
}

// -- API ----------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${status} ${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export async function getJson(path, signed) {
  const headers = { Accept: "application/json" };
  if (signed) {
    const token = session.token();
    if (!token) throw new ApiError(401, "AUTH_REQUIRED", "sign in first");
    headers.Authorization = `Consortia-Session ${token}`;
  }
  const resp = await fetch(path, { headers });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const p = body || {};
    const err = new ApiError(resp.status, p.code || "HTTP_ERROR", p.detail || resp.statusText);
    if (signed && resp.status === 401) {
      // expired, revoked by a key rotation, ...: forget it and tell the page
      session.clear();
      window.dispatchEvent(new CustomEvent("consortia:session-refused", { detail: err }));
    }
    throw err;
  }
  return body;
}

// A public POST (no session: session grants are for GET reads only).
export async function postJson(path, payload) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const p = body || {};
    throw new ApiError(resp.status, p.code || "HTTP_ERROR", p.detail || resp.statusText);
  }
  return body;
}

const seg = encodeURIComponent;

export const api = {
  status: () => getJson("/v1/status"),
  block: (h) => getJson(`/v1/blocks/${seg(h)}`),
  certificate: (h) => getJson(`/v1/blocks/${seg(h)}/certificate`),
  anchor: (chain) => getJson(`/v1/anchors/${seg(chain)}`),
  account: (address) => getJson(`/v1/accounts/${seg(address)}`),
  tx: (hash) => getJson(`/v1/tx/${seg(hash)}`, true),
  contract: (address) => getJson(`/v1/contracts/${seg(address)}`),
  decodeLog: (address, topics, data) =>
    postJson(`/v1/contracts/${seg(address)}/decode-log`, { topics, data }),
  activity: (n) => getJson(`/v1/activity?blocks=${seg(n)}`),
  me: () => getJson("/v1/me", true),
  overview: () => getJson("/v1/supervision/overview", true),
  alerts: () => getJson("/v1/supervision/alerts", true),
  lookThrough: (id) => getJson(`/v1/supervision/investors/${seg(id)}`, true),
  holders: (chain, sec) => getJson(`/v1/supervision/holders/${seg(chain)}/${seg(sec)}`, true),
  largePayments: () => getJson("/v1/supervision/large-payments", true),
  freezes: () => getJson("/v1/supervision/freezes", true),
  orders: () => getJson("/v1/supervision/orders", true),
  anchoring: () => getJson("/v1/supervision/anchoring", true),
  notary: (gapDays) => getJson(`/v1/supervision/notary?gap_days=${seg(gapDays)}`, true),
  streamUrl: () => "/v1/stream",
};

// -- the session --------------------------------------------------------------------------------

const STORE_KEY = "consortia.session";
const TOKEN_SHAPE = /^cs1\.[0-9a-f]*\.[0-9a-f]+\.[0-9]{1,16}\.[0-9]{1,16}\.[0-9a-f]+$/;

export const session = {
  token() {
    try {
      return sessionStorage.getItem(STORE_KEY) || "";
    } catch {
      return "";
    }
  },
  // The token's own fields (it is not secret from its holder): address and expiry.
  parse(token) {
    if (!TOKEN_SHAPE.test(token)) return null;
    const [, , address, issued, expires] = token.split(".");
    return { address, issued: Number(issued), expires: Number(expires) };
  },
  set(token) {
    const t = String(token || "").trim();
    if (!this.parse(t)) throw new Error("that is not a session token (cs1.…): run `consortia api login`");
    sessionStorage.setItem(STORE_KEY, t);
  },
  clear() {
    try {
      sessionStorage.removeItem(STORE_KEY);
    } catch {
      /* storage disabled: nothing kept */
    }
  },
  // A token in the URL fragment (#session=TOKEN, from `consortia api login`): stored, then
  // removed from the address bar and the history entry.
  takeFromUrl() {
    const m = /^#session=([^&]*)/.exec(location.hash);
    if (!m) return false;
    history.replaceState(null, "", location.pathname + location.search + "#/");
    this.set(decodeURIComponent(m[1]));
    return true;
  },
};
