// consortia web UI: the explorer (public chain data), the investor view and the regulator
// dashboard (signed in with a session grant). No build step, no third-party code; every value
// from the API goes into the page through textContent, never parsed as HTML.

import {
  $,
  ApiError,
  api,
  clear,
  el,
  fmtAge,
  fmtTime,
  kvRows,
  link,
  session,
  short,
} from "./api.js";
import { showDashboard, refreshDashboard } from "./dashboard.js";
import { showInvestor, refreshInvestor } from "./investor.js";
import { setupNotary, showDeposit } from "./notary.js";

const LATEST = 20; // rows in the latest-blocks table
const RETRY_MS = 3000; // reopen the stream after it is closed for good
const REFRESH_MS = 400; // coalesce refreshes of the private pages when blocks come fast

const state = { chainId: "", top: 0, stream: null, view: "", me: null, refreshTimer: 0 };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// -- chain head and latest blocks -----------------------------------------------------------------

function setHead(height, hash, timeMs) {
  $("head-height").textContent = String(height);
  $("head-hash").textContent = short(hash, 16);
  $("head-hash").title = String(hash || "");
  $("head-time").textContent = fmtTime(timeMs);
}

function setLive(text, ok) {
  const badge = $("live");
  badge.textContent = text;
  badge.className = ok ? "badge ok" : "badge";
}

// A summary {height, hash, tx_count, proposer, time_ms} from a stream event or a block read.
function summaryOf(block) {
  if (block.header) {
    return {
      height: block.height,
      hash: block.hash,
      tx_count: block.transactions.length,
      proposer: block.header.proposer,
      time_ms: block.header.time_ms,
    };
  }
  return block;
}

function blockRow(b) {
  const tr = el("tr", undefined, { "data-height": b.height });
  const h = el("td");
  h.appendChild(link(`#/block/${b.height}`, b.height));
  tr.appendChild(h);
  const hash = el("td");
  hash.appendChild(el("code", short(b.hash), { title: b.hash }));
  tr.appendChild(hash);
  tr.appendChild(el("td", b.tx_count, { class: "num" }));
  const prop = el("td");
  prop.appendChild(el("code", short(b.proposer), { title: b.proposer }));
  tr.appendChild(prop);
  tr.appendChild(el("td", fmtTime(b.time_ms)));
  return tr;
}

function addBlock(summary) {
  const body = $("blocks").tBodies[0];
  if (body.querySelector(`tr[data-height="${Number(summary.height)}"]`)) return;
  const row = blockRow(summary);
  // keep the table sorted by height, newest first
  let before = null;
  for (const tr of body.rows) {
    if (Number(tr.dataset.height) < summary.height) {
      before = tr;
      break;
    }
  }
  body.insertBefore(row, before);
  while (body.rows.length > LATEST) body.deleteRow(body.rows.length - 1);
}

async function loadLatest(head) {
  const heights = [];
  for (let h = head; h >= 1 && heights.length < LATEST; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((h) => api.block(h).catch(() => null)));
  for (const b of blocks) if (b) addBlock(summaryOf(b));
}

async function onBlockEvent(data) {
  const b = JSON.parse(data);
  if (typeof b.height !== "number") return;
  if (b.height > state.top + 1 && state.top > 0) {
    // blocks committed between the status read and the stream opening: fetch them
    const from = Math.max(state.top + 1, b.height - LATEST);
    for (let h = from; h < b.height; h++) {
      api.block(h).then((blk) => addBlock(summaryOf(blk))).catch(() => {});
    }
  }
  if (b.height >= state.top) {
    state.top = b.height;
    setHead(b.height, b.hash, b.time_ms);
  }
  addBlock(b);
  refreshSoon();
}

function openStream() {
  if (state.stream) state.stream.close();
  const es = new EventSource(api.streamUrl());
  state.stream = es;
  es.addEventListener("open", () => setLive("live", true));
  es.addEventListener("block", (ev) => {
    onBlockEvent(ev.data).catch((err) => showError(String(err)));
  });
  es.addEventListener("error", () => {
    if (es.readyState === EventSource.CLOSED) {
      // refused (e.g. 503 TOO_MANY_STREAMS): the browser will not retry by itself
      setLive("offline", false);
      setTimeout(openStream, RETRY_MS);
    } else {
      setLive("reconnecting", false);
    }
  });
}

// -- block page ---------------------------------------------------------------------------------

async function showBlock(height) {
  $("block-height").textContent = String(height);
  for (const id of ["block-header", "block-cert", "block-signers"]) clear($(id).tBodies[0]);
  clear($("block-txs"));
  $("block-prev").href = `#/block/${Math.max(1, height - 1)}`;
  $("block-next").href = `#/block/${height + 1}`;
  const [block, cert] = await Promise.all([api.block(height), api.certificate(height)]);
  const hd = block.header || {};
  kvRows($("block-header"), [
    ["hash", block.hash],
    ["chain id", hd.chain_id],
    ["height", hd.height],
    ["time", fmtTime(hd.time_ms)],
    ["parent hash", hd.parent_hash],
    ["proposer", hd.proposer],
    ["transactions root", hd.transactions_root],
    ["receipts root", hd.receipts_root],
    ["state root", hd.state_root],
    ["validator set hash", hd.validator_set_hash],
    ["next validator set hash", hd.next_validator_set_hash],
    ["evidence", block.evidence],
  ]);
  const txs = $("block-txs");
  if (!block.transactions.length) txs.appendChild(el("li", "no transactions", { class: "muted" }));
  for (const h of block.transactions) {
    const li = el("li");
    li.appendChild(el("code", h));
    txs.appendChild(li);
    if (session.token()) describeTx(li, h); // signed in: the receipts this account may read
  }
  kvRows($("block-cert"), [
    ["round", cert.round],
    ["block hash", cert.block_hash],
    ["signatures", (cert.signatures || []).length],
  ]);
  const body = $("block-signers").tBodies[0];
  for (const sig of cert.signatures || []) {
    const tr = el("tr");
    const who = el("td");
    who.appendChild(el("code", sig.validator));
    tr.appendChild(who);
    tr.appendChild(el("td", fmtTime(sig.time_ms)));
    body.appendChild(tr);
  }
}

// A transaction's outcome and events under its hash; a contract's EVM log (contracts.log) is
// decoded with the ABI its deployer published (the API decodes it: api.decodeLog). A
// transaction this account may not read keeps the bare hash.
async function describeTx(li, hash) {
  let read;
  try {
    read = await api.tx(hash);
  } catch {
    return;
  }
  const t = read.transaction || {};
  const r = read.receipt || {};
  const outcome = r.code ? `${r.status} ${r.code}` : r.status;
  li.appendChild(el("span", ` ${t.module}.${t.method} — ${outcome}`, { class: "muted" }));
  const events = r.events || [];
  if (!events.length) return;
  const list = el("ul", undefined, { class: "events" });
  for (const ev of events) {
    const item = el("li");
    item.appendChild(el("span", `${ev.module}.${ev.kind} `));
    list.appendChild(item);
    const attrs = ev.attributes || {};
    if (ev.module === "contracts" && ev.kind === "log") {
      decodeLogInto(item, attrs);
    } else {
      const brief = Object.entries(attrs).map(
        ([k, v]) => `${k}=${typeof v === "string" ? short(v, 18) : JSON.stringify(v)}`,
      );
      item.appendChild(el("span", brief.join(" "), { class: "muted", title: JSON.stringify(attrs) }));
    }
  }
  li.appendChild(list);
}

async function decodeLogInto(item, log) {
  const raw = el("code", short(log.address, 12), { title: log.address });
  item.appendChild(raw);
  try {
    const d = await api.decodeLog(log.address, log.topics || [], log.data || "");
    const args = Object.entries(d.args || {}).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
    item.appendChild(el("span", ` ${d.event}(${args.join(", ")})`, { title: d.signature }));
  } catch {
    // no published ABI or an unknown event: the raw topics and data
    item.appendChild(el("span", ` topics ${(log.topics || []).join(" ")} data ${log.data || ""}`, { class: "muted" }));
  }
}

// -- anchors ------------------------------------------------------------------------------------

async function showAnchor(chain) {
  $("anchor-chain").value = chain;
  clear($("anchor").tBodies[0]);
  if (!chain) return;
  let read;
  try {
    read = await api.anchor(chain);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      kvRows($("anchor"), [["status", `no anchored chain "${chain}" on ${state.chainId || "this chain"}`]]);
      return;
    }
    throw err;
  }
  const r = read.record || {};
  const nextSet = r.next_validators && r.next_validators.validators;
  kvRows($("anchor"), [
    ["chain id", r.chain_id],
    ["suite", r.suite],
    ["anchored height", r.height],
    ["anchored block hash", r.block_hash],
    ["anchored block time", fmtTime(r.time_ms)],
    ["age of the anchored header", fmtAge(r.time_ms)],
    ["lag vs business head", "not known to this node (the relayer reports it)"],
    ["next validators", Array.isArray(nextSet) ? nextSet.length : "—"],
    ["registered at supervision height", r.registered_height],
    ["read at supervision height", read.height],
    ["supervision state root", read.state_root],
  ]);
}

// -- signing in ----------------------------------------------------------------------------------

function showSignedIn(me) {
  state.me = me;
  $("signin-form").hidden = Boolean(me);
  $("signed-in").hidden = !me;
  if (!me) {
    $("who").textContent = "";
    return;
  }
  const roles = (me.roles || []).join(", ") || "no roles";
  $("who").textContent = `${me.org_id} / ${short(me.address, 14)} (${roles})`;
  $("who").title = me.address;
  const info = session.parse(session.token());
  $("session-expiry").textContent = info ? `until ${fmtTime(info.expires)}` : "";
}

async function signIn() {
  if (!session.token()) {
    showSignedIn(null);
    return null;
  }
  try {
    const me = await api.me();
    showSignedIn(me);
    return me;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null; // signed out by api.js
    throw err;
  }
}

function signOut() {
  session.clear();
  showSignedIn(null);
  location.hash = "#/";
}

function setupSignIn() {
  window.addEventListener("consortia:session-refused", (ev) => {
    showSignedIn(null);
    route().finally(() => showError(`signed out: ${ev.detail.detail || ev.detail.code}`));
  });
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    showError("");
    try {
      session.set($("signin-token").value);
    } catch (err) {
      showError(err.message);
      return;
    }
    $("signin-token").value = "";
    signIn()
      .then((me) => {
        if (me) location.hash = homeOf(me);
      })
      .catch((err) => showError(String(err.message || err)));
  });
  $("signout").addEventListener("click", signOut);
}

function homeOf(me) {
  if ((me.roles || []).includes("regulator")) return "#/dashboard";
  return "#/investor";
}

// -- live updates of the private pages ------------------------------------------------------------

function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = 0;
    const job =
      state.view === "view-investor"
        ? refreshInvestor()
        : state.view === "view-dashboard"
          ? refreshDashboard()
          : null;
    if (job) job.catch((err) => showError(String(err.message || err)));
  }, REFRESH_MS);
}

// -- routing ------------------------------------------------------------------------------------

const VIEWS = ["view-blocks", "view-block", "view-anchors", "view-investor", "view-dashboard", "view-notary"];

function show(view) {
  state.view = view;
  for (const id of VIEWS) $(id).hidden = id !== view;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === view || (view === "view-block" && a.dataset.view === "view-blocks"));
  }
}

async function route(ev) {
  if (ev) showError(""); // a navigation clears the last error; the first route keeps sign-in's
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "block" && /^[0-9]+$/.test(parts[1] || "")) {
      show("view-block");
      await showBlock(Number(parts[1]));
    } else if (parts[0] === "anchors") {
      show("view-anchors");
      await showAnchor(parts[1] || "");
    } else if (parts[0] === "investor") {
      show("view-investor");
      await showInvestor(state.me);
    } else if (parts[0] === "dashboard") {
      show("view-dashboard");
      await showDashboard(state.me);
    } else if (parts[0] === "notary") {
      show("view-notary");
      if (parts[1]) await showDeposit(parts[1]);
    } else {
      show("view-blocks");
    }
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
  }
}

async function main() {
  setupSignIn();
  setupNotary(showError);
  $("anchor-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chain = $("anchor-chain").value.trim();
    location.hash = `#/anchors/${encodeURIComponent(chain)}`;
  });
  let fromUrl = false;
  try {
    fromUrl = session.takeFromUrl();
  } catch (err) {
    showError(err.message);
  }
  try {
    const me = await signIn();
    if (me && fromUrl) history.replaceState(null, "", location.pathname + homeOf(me));
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
  }
  window.addEventListener("hashchange", route);
  try {
    const st = await api.status();
    state.chainId = st.chain_id;
    state.top = st.height;
    $("head-chain").textContent = `${st.chain_id} (${st.role || "node"})`;
    setHead(st.height, st.last_block_hash, st.last_time_ms);
    await loadLatest(st.height);
  } catch (err) {
    showError(err instanceof Error ? err.message : String(err));
  }
  openStream();
  await route();
}

main();
