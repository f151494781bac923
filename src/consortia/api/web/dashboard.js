// The regulator dashboard, served by a supervision node's API (the regulator signs in there):
// overview, live alerts, large-value payments, freezes, orders, anchoring lag per business chain,
// look-through of one investor across chains, holder registers, and a chart of throughput and
// block interval over recent blocks (inline SVG built with DOM calls). Panels refresh when the
// event stream reports a new block.

import { $, ApiError, api, clear, el, fmtNum, fmtTime, fmtYuan, kvRows } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const CHART_BLOCKS = 60;
const MAX_ROWS = 50;
const NOTARY_GAP_DAYS = 30; // the gap report: projects without a deposit for longer than this

// -- generic rendering of the supervision reads -----------------------------------------------------

// A value as table text: amounts in fen as yuan, *_ms as times, long hex shortened.
function cellOf(key, value) {
  if (value === null || value === undefined) return { text: "—" };
  if (typeof value === "number") {
    if (/_fen$/.test(key)) return { text: fmtYuan(value), cls: "num" };
    if (/(^|_)ms$/.test(key) && /time|_at|opened|closed|placed/.test(key)) return { text: fmtTime(value) };
    return { text: fmtNum(value), cls: "num" };
  }
  if (typeof value === "boolean") return { text: value ? "yes" : "no" };
  if (typeof value === "string") {
    if (/^[0-9a-f]{24,}$/.test(value)) return { text: value.slice(0, 12) + "…", title: value, cls: "hex" };
    return { text: value };
  }
  return { text: JSON.stringify(value) };
}

// The rows of a reply: the reply itself if it is a list, else its first list-valued field
// (``items``, ``alerts``, ...); the rest of an object reply is its summary.
const HIDDEN = ["indexed", "next_after"]; // the index's freshness is shown once, in the overview

function rowsOf(reply, hide) {
  if (Array.isArray(reply)) return { rows: reply, summary: {} };
  const summary = {};
  let rows = null;
  for (const [k, v] of Object.entries(reply || {})) {
    if (HIDDEN.includes(k) || (hide || []).includes(k)) continue;
    if (rows === null && Array.isArray(v) && (v.length === 0 || typeof v[0] === "object")) rows = v;
    else summary[k] = v;
  }
  return { rows: rows || [], summary };
}

function table(rows, columns, rowData) {
  const t = el("table", undefined, { class: "grid" });
  const head = el("thead");
  const hr = el("tr");
  for (const c of columns) hr.appendChild(el("th", c.replace(/_/g, " ")));
  head.appendChild(hr);
  t.appendChild(head);
  const body = el("tbody");
  for (const row of rows.slice(0, MAX_ROWS)) {
    const tr = el("tr");
    for (const c of columns) {
      const cell = cellOf(c, row[c]);
      const td = el("td", cell.text);
      if (cell.cls) td.className = cell.cls;
      if (cell.title) td.title = cell.title;
      tr.appendChild(td);
    }
    for (const [k, v] of Object.entries(rowData ? rowData(row) : {})) tr.dataset[k] = String(v);
    body.appendChild(tr);
  }
  t.appendChild(body);
  return t;
}

function columnsOf(rows, preferred) {
  const seen = [];
  for (const row of rows.slice(0, 20)) {
    for (const k of Object.keys(row || {})) if (!seen.includes(k)) seen.push(k);
  }
  const first = (preferred || []).filter((k) => seen.includes(k));
  return [...first, ...seen.filter((k) => !first.includes(k))];
}

// Fill panel ``id`` from ``reply``: a summary line of its scalar fields, then a table of its rows.
function renderPanel(id, reply, options) {
  const opts = options || {};
  const box = $(id);
  clear(box);
  const { rows, summary } = rowsOf(reply, opts.hide);
  const facts = Object.entries(summary).filter(([, v]) => v === null || typeof v !== "object");
  if (facts.length) {
    box.appendChild(
      el("p", facts.map(([k, v]) => `${k.replace(/_/g, " ")}: ${cellOf(k, v).text}`).join(" · "), { class: "muted" }),
    );
  }
  const nested = Object.entries(summary).filter(([, v]) => v !== null && typeof v === "object" && !Array.isArray(v));
  for (const [k, v] of nested) {
    const t = el("table", undefined, { class: "kv" });
    t.appendChild(el("tbody"));
    kvRows(t, Object.entries(v).map(([kk, vv]) => [`${k.replace(/_/g, " ")}: ${kk}`, cellOf(kk, vv).text]));
    box.appendChild(t);
  }
  if (!rows.length) {
    box.appendChild(el("p", opts.empty || "none", { class: "muted empty" }));
    return;
  }
  const columns = opts.only ? opts.columns : columnsOf(rows, opts.columns);
  box.appendChild(table(rows, columns, opts.rowData));
  if (rows.length > MAX_ROWS) box.appendChild(el("p", `first ${MAX_ROWS} of ${rows.length}`, { class: "muted" }));
}

function renderProblem(id, err) {
  const box = $(id);
  clear(box);
  let text = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError) {
    if (err.code === "LOOKTHROUGH_UNAVAILABLE") {
      text = `The look-through index is not available on this node: ${err.detail}. ` +
        "Serve the dashboard from a supervision node that runs `consortia supervise follow`.";
    } else if (err.status === 403) {
      text = `Only a regulator account may read this (${err.detail}).`;
    } else if (err.status === 404 && err.code === "NOT_FOUND") {
      text = err.detail;
    }
  }
  box.appendChild(el("p", text, { class: err instanceof ApiError && err.status === 404 ? "muted" : "error" }));
}

async function panel(id, read, options) {
  try {
    renderPanel(id, await read(), options);
  } catch (err) {
    renderProblem(id, err);
  }
}

// -- the activity chart -----------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function pick(row, names) {
  for (const n of names) if (typeof row[n] === "number") return row[n];
  return 0;
}

// Bars: transactions per block; line: the interval to the previous block (time to finality of
// the next block, in ms). Both scaled to their own maximum.
export function drawActivity(box, blocks) {
  clear(box);
  const rows = blocks.slice().sort((a, b) => a.height - b.height);
  if (!rows.length) {
    box.appendChild(el("p", "no blocks yet", { class: "muted" }));
    return;
  }
  const W = 720, H = 200, L = 44, R = 44, T = 12, B = 28;
  const txs = rows.map((r) => pick(r, ["tx_count", "txs", "transactions"]));
  const gaps = rows.map((r) => pick(r, ["interval_ms", "block_interval_ms", "interval"]));
  const maxTx = Math.max(1, ...txs);
  // One long pause (the chain idle, a node restarted) must not flatten the rest: the interval
  // scale stops at three times the median, and longer intervals are drawn clipped at the top.
  const sortedGaps = gaps.filter((g) => g > 0).sort((a, b) => a - b);
  const median = sortedGaps.length ? sortedGaps[Math.floor(sortedGaps.length / 2)] : 0;
  const maxGap = Math.max(1, Math.min(Math.max(0, ...gaps), 3 * median || Infinity));
  const step = (W - L - R) / rows.length;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "data-blocks": rows.length });
  chart.appendChild(svg("title", {}, `Transactions per block and block interval, heights ${rows[0].height}–${rows[rows.length - 1].height}`));
  chart.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  rows.forEach((r, i) => {
    const h = ((H - T - B) * txs[i]) / maxTx;
    const bar = svg("rect", { x: L + i * step + 1, y: H - B - h, width: Math.max(1, step - 2), height: h, class: "bar" });
    bar.appendChild(svg("title", {}, `height ${r.height}: ${txs[i]} tx, ${gaps[i]} ms`));
    chart.appendChild(bar);
  });
  const points = rows.map((r, i) => `${L + i * step + step / 2},${H - B - ((H - T - B) * Math.min(gaps[i], maxGap)) / maxGap}`);
  chart.appendChild(svg("polyline", { points: points.join(" "), class: "line" }));
  chart.appendChild(svg("text", { x: 2, y: T + 8, class: "tick" }, `${maxTx} tx`));
  chart.appendChild(svg("text", { x: W - R + 4, y: T + 8, class: "tick line-label" }, `${maxGap} ms`));
  chart.appendChild(svg("text", { x: L, y: H - 8, class: "tick" }, `#${rows[0].height}`));
  chart.appendChild(svg("text", { x: W - R, y: H - 8, class: "tick", "text-anchor": "end" }, `#${rows[rows.length - 1].height}`));
  box.appendChild(chart);
  const total = txs.reduce((a, b) => a + b, 0);
  // throughput while the chain commits: clipped pauses count at the clip, not in full
  const spanMs = gaps.slice(1).reduce((a, g) => a + Math.min(g, maxGap), 0);
  const tps = spanMs > 0 ? (total / (spanMs / 1000)).toFixed(2) : "—";
  const clipped = gaps.filter((g) => g > maxGap).length;
  const note = clipped ? ` · ${clipped} longer pause(s) clipped` : "";
  box.appendChild(el("p", `${total} transactions in ${rows.length} blocks · ${tps} tx/s · median block interval ${median} ms${note}`, { class: "muted", id: "chart-summary" }));
}

async function loadActivity() {
  const box = $("dash-chart");
  try {
    const reply = await api.activity(CHART_BLOCKS);
    drawActivity(box, rowsOf(reply).rows);
  } catch (err) {
    renderProblem("dash-chart", err);
  }
}

// -- look-through of one investor ---------------------------------------------------------------------

function addTable(box, title, rows, columns, empty) {
  box.appendChild(el("h4", title));
  if (!rows.length) box.appendChild(el("p", empty, { class: "muted empty" }));
  else box.appendChild(table(rows, columns));
}

async function lookThrough(id) {
  const box = $("dash-investor");
  let r;
  try {
    r = await api.lookThrough(id);
  } catch (err) {
    renderProblem("dash-investor", err);
    return;
  }
  clear(box);
  const chains = r.chains || [];
  const holdings = [];
  const wallets = [];
  for (const c of chains) {
    for (const a of c.accounts || []) {
      for (const [code, balance] of Object.entries(a.holdings || {})) {
        holdings.push({ chain_id: c.chain_id, broker: c.broker, account_id: a.account_id, code, balance });
      }
    }
    for (const w of c.wallets || []) wallets.push({ chain_id: c.chain_id, ...w });
  }
  const totals = Object.entries(r.total_holdings || {}).map(([k, v]) => `${k} ${fmtNum(v)}`).join(", ");
  box.appendChild(
    el("p", `${r.investor_id} on ${chains.length} chain(s): ${chains.map((c) => c.chain_id).join(", ")} · holdings ${totals || "none"} · e-CNY ${fmtYuan(r.total_ecny_fen)}`, { class: "summary", "data-investor": r.investor_id }),
  );
  addTable(box, "Holdings", holdings, ["chain_id", "broker", "account_id", "code", "balance"], "no holdings");
  addTable(box, "e-CNY wallets", wallets, ["chain_id", "wallet_id", "balance_fen"], "no wallets");
  const history = r.history || [];
  addTable(box, "Latest transactions", history, columnsOf(history, ["chain_id", "height", "time_ms", "call", "outcome"]), "no transactions");
}

// -- the page ---------------------------------------------------------------------------------------

let lookupInvestor = "";
let lookupHolders = null;

async function loadAll() {
  const notary = api.notary(NOTARY_GAP_DAYS); // one read for both notary panels
  await Promise.all([
    panel("dash-notary", async () => ({ projects: (await notary).projects }), {
      columns: ["org_id", "project", "chain_id", "deposits", "withdrawn", "latest_deposit_id", "latest_version", "latest_time_ms"],
      only: true,
      empty: "no notary deposits indexed",
    }),
    panel("dash-notary-gaps", async () => {
      const r = await notary;
      return { gap_days: r.gap_days, gaps: r.gaps };
    }, {
      columns: ["org_id", "project", "chain_id", "idle_days", "latest_deposit_id", "latest_time_ms"],
      only: true,
      empty: `no project idle for more than ${NOTARY_GAP_DAYS} days`,
    }),
    panel("dash-overview", api.overview, {
      columns: ["chain_id", "indexed_height", "anchored_height", "lag_blocks", "alerts", "open_freezes", "orders"],
      only: true,
      empty: "no business chain indexed yet",
    }),
    panel("dash-alerts", api.alerts, {
      columns: ["id", "severity", "rule", "chain_id", "height", "subject", "detail"],
      empty: "no alerts",
      rowData: (r) => ({ rule: r.rule || "", severity: r.severity || "" }),
    }),
    panel("dash-payments", api.largePayments, {
      columns: ["id", "chain_id", "height", "time_ms", "payer", "payer_operator", "payee", "payee_operator", "amount_fen", "purpose"],
      empty: "no large-value payments",
    }),
    panel("dash-freezes", api.freezes, { empty: "no open freezes" }),
    panel("dash-orders", api.orders, { empty: "no supervision orders", hide: ["node"] }),
    panel("dash-anchoring", api.anchoring, {
      columns: ["chain_id", "registered", "anchored_height", "indexed_height", "lag_blocks", "lag_ms", "anchored_time_ms"],
      only: true,
      hide: ["node"],
      empty: "no business chains registered",
      rowData: (r) => ({ chain: r.chain_id || "" }),
    }),
    loadActivity(),
    lookupInvestor ? lookThrough(lookupInvestor) : null,
    lookupHolders ? panel("dash-holders", () => api.holders(lookupHolders[0], lookupHolders[1])) : null,
  ]);
  $("dash-updated").textContent = `updated ${fmtTime(Date.now())}`;
}

let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  $("lookthrough-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    lookupInvestor = $("lookthrough-id").value.trim();
    if (lookupInvestor) lookThrough(lookupInvestor);
  });
  $("holders-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chain = $("holders-chain").value.trim();
    const sec = $("holders-code").value.trim();
    if (!chain || !sec) return;
    lookupHolders = [chain, sec];
    panel("dash-holders", () => api.holders(chain, sec), { empty: "no holders" });
  });
}

export async function showDashboard(me) {
  wire();
  const regulator = Boolean(me && (me.roles || []).includes("regulator"));
  $("dash-signed-out").hidden = regulator;
  $("dash-body").hidden = !regulator;
  $("dash-signed-out").textContent = me
    ? "The dashboard is for regulator accounts: this account has no regulator role."
    : "Sign in as a regulator (a session token from `consortia api login`) to see the dashboard.";
  if (!regulator) return;
  await loadAll();
}

export async function refreshDashboard() {
  if ($("dash-body").hidden) return;
  await loadAll();
}
