// The investor view: one signed read of "me" (the caller's investor record, securities accounts
// with holdings, e-CNY wallets, fund positions and orders, insurance policies), refreshed when the
// event stream reports a new block.

import { $, ApiError, api, clear, el, fillTable, fmtNum, fmtTime, fmtYuan, kvRows } from "./api.js";

const RISK = ["", "C1", "C2", "C3", "C4", "C5"];

function setStatus(text) {
  $("inv-status").textContent = text;
}

function renderInvestor(inv) {
  const r = inv.record || {};
  const box = el("section", undefined, { class: "card", "data-investor": r.investor_id });
  box.appendChild(el("h3", `Investor ${r.investor_id}`));
  const table = el("table", undefined, { class: "kv" });
  table.appendChild(el("tbody"));
  box.appendChild(table);
  kvRows(table, [
    ["kind", r.kind],
    ["broker", r.org_id],
    ["KYC level", r.kyc_level],
    ["risk tolerance", RISK[r.risk_tolerance] || r.risk_tolerance],
    ["qualified investor", r.qualified ? "yes" : "no"],
    ["opened at height", r.opened_height],
  ]);
  return box;
}

function holdingsRows(investors) {
  const rows = [];
  for (const inv of investors) {
    for (const entry of inv.accounts || []) {
      const acct = entry.account || {};
      for (const h of entry.holdings || []) {
        rows.push({
          cells: [
            acct.account_id,
            h.code,
            { text: fmtNum(h.balance), cls: "num balance" },
            { text: fmtNum(h.pledged), cls: "num" },
            { text: fmtNum(h.frozen), cls: "num" },
            { text: fmtNum(h.locked), cls: "num" },
            acct.frozen ? `frozen (${acct.freeze_reference})` : acct.status,
          ],
          data: { account: acct.account_id, code: h.code },
        });
      }
      if (!(entry.holdings || []).length) {
        rows.push({
          cells: [acct.account_id, "—", "", "", "", "", acct.status],
          data: { account: acct.account_id },
        });
      }
    }
  }
  return rows;
}

function walletRows(wallets) {
  return wallets.map((w) => {
    const r = w.record || {};
    const lim = w.limits || {};
    return {
      cells: [
        r.wallet_id,
        r.operator_org,
        `category ${r.category}${r.parent ? ` (sub-wallet of ${r.parent})` : ""}`,
        { text: fmtYuan(r.balance), cls: "num balance" },
        { text: lim.balance_cap === null || lim.balance_cap === undefined ? "none" : fmtYuan(lim.balance_cap), cls: "num" },
        { text: lim.per_payment === null || lim.per_payment === undefined ? "none" : fmtYuan(lim.per_payment), cls: "num" },
        { text: `${fmtYuan(w.day_spent)} of ${lim.daily === null || lim.daily === undefined ? "no limit" : fmtYuan(lim.daily)}`, cls: "num" },
        r.frozen ? `frozen (${r.frozen})` : "active",
      ],
      data: { wallet: r.wallet_id },
    };
  });
}

function positionRows(investors) {
  const rows = [];
  for (const inv of investors) {
    for (const p of inv.fund_positions || []) {
      const r = p.record || {};
      const lots = (r.lots || []).map((l) => `${l.trading_day}: ${fmtNum(l.units)}`).join(", ");
      rows.push({
        cells: [
          r.code,
          r.account_id,
          { text: fmtNum(p.units), cls: "num units" },
          { text: fmtNum(p.reserved), cls: "num" },
          { text: fmtNum(p.available), cls: "num" },
          lots || "—",
        ],
        data: { fund: r.code },
      });
    }
  }
  return rows;
}

function orderRows(investors) {
  const rows = [];
  for (const inv of investors) {
    for (const o of inv.fund_orders || []) {
      rows.push({
        cells: [
          o.order_id,
          o.code,
          o.kind,
          { text: o.kind === "subscribe" ? fmtYuan(o.amount_fen) : "—", cls: "num" },
          { text: fmtNum(o.units), cls: "num" },
          o.trading_day,
          { text: o.status, cls: `status ${o.status}`, title: o.failure || "" },
          fmtTime(o.placed_ms),
        ],
        data: { order: o.order_id },
      });
    }
  }
  return rows;
}

function policyRows(investors) {
  const rows = [];
  for (const inv of investors) {
    for (const p of inv.policies || []) {
      rows.push({
        cells: [
          p.policy_id,
          p.product_id,
          p.insurer_org,
          { text: fmtYuan(p.premium_fen), cls: "num" },
          { text: fmtYuan(p.coverage_fen), cls: "num" },
          { text: fmtYuan(p.claimed_fen), cls: "num" },
          p.status,
          fmtTime(p.end_ms),
        ],
        data: { policy: p.policy_id },
      });
    }
  }
  return rows;
}

// One line about a record an institution serves (``/v1/me`` ``customers``).
function customerDetails(kind, r) {
  switch (kind) {
    case "investor":
      return `${r.kind} · KYC ${r.kyc_level} · ${RISK[r.risk_tolerance] || r.risk_tolerance}${r.qualified ? " · qualified" : ""}`;
    case "wallet":
      return `${fmtYuan(r.balance)} · category ${r.category}${r.parent ? ` · sub-wallet of ${r.parent}` : ""}${r.frozen ? ` · frozen (${r.frozen})` : ""}`;
    case "fund":
      return `manager ${r.manager_org} · last NAV ${r.last_nav_day ? `${r.last_nav} on ${r.last_nav_day}` : "none yet"}`;
    case "product":
      return `${r.name} · premium ${fmtYuan(r.premium_fen)} · coverage ${fmtYuan(r.coverage_fen)}`;
    case "policy":
      return `${r.status} · ${r.investor_id} · premium ${fmtYuan(r.premium_fen)}`;
    default:
      return "";
  }
}

function renderCustomers(customers) {
  $("inv-customers-box").hidden = !customers;
  if (!customers) return;
  const rows = (customers.items || []).map((c) => ({
    cells: [c.kind, c.id, customerDetails(c.kind, c.record || {})],
    data: { kind: c.kind, id: c.id },
  }));
  fillTable($("inv-customers"), rows, "no customers yet");
  $("inv-customers-more").textContent = customers.next ? "more on the next page of /me (after=" + customers.next + ")" : "";
}

function render(me) {
  const investors = me.investors || [];
  const list = $("inv-records");
  clear(list);
  for (const inv of investors) list.appendChild(renderInvestor(inv));
  if (!investors.length && !me.customers) {
    list.appendChild(el("p", "This account is no investor's own account: no investor records.", { class: "muted" }));
  }
  renderCustomers(me.customers);
  fillTable($("inv-holdings"), holdingsRows(investors), "no securities accounts");
  fillTable($("inv-wallets"), walletRows(me.wallets || []), "no e-CNY wallets");
  fillTable($("inv-positions"), positionRows(investors), "no fund positions");
  fillTable($("inv-orders"), orderRows(investors), "no fund orders");
  fillTable($("inv-policies"), policyRows(investors), "no insurance policies");
  const cut = Object.entries(me.truncated || {}).filter(([, v]) => v);
  $("inv-height").textContent = String(me.height);
  $("inv-height").dataset.height = String(me.height);
  setStatus(cut.length ? `lists cut at ${me.max_items} entries: ${cut.map(([k]) => k).join(", ")}` : "");
}

async function load() {
  try {
    render(await api.me());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setStatus(`not signed in: ${err.detail || err.code}`);
      return;
    }
    throw err;
  }
}

export async function showInvestor(me) {
  $("inv-signed-out").hidden = Boolean(me);
  $("inv-body").hidden = !me;
  if (!me) {
    $("inv-height").textContent = "—";
    return;
  }
  await load();
}

export async function refreshInvestor() {
  if ($("inv-body").hidden) return;
  await load();
}
