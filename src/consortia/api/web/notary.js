// The Notary page: drop or pick a file, its SHA-256 is computed here in the page (the file never
// leaves this machine: only the 32-byte digest goes to the API), then the notary lookup by
// SHA-256 says whether, by whom and when it was deposited, and whether that block
// is anchored on the supervision chain. Signed in (a session of the depositor's organization or
// the regulator), the answer also carries the deposit's title, project and type.

import { $, ApiError, clear, el, fmtTime, getJson, kvRows, session } from "./api.js";

const seg = encodeURIComponent;

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

// The SHA-256 of a File, in the page (WebCrypto digests a whole buffer; there is no streaming
// digest in the browser, so the file is read into memory here, never sent anywhere).
export async function sha256OfFile(file) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error("this page needs a secure context (https, or http on localhost) to hash files");
  }
  const data = await file.arrayBuffer();
  return hex(await crypto.subtle.digest("SHA-256", data));
}

function anchorText(anchor) {
  if (!anchor) return "anchoring not known";
  if (anchor.status === "anchored") return `anchored at supervision height ${anchor.supervision_height}`;
  if (anchor.status === "not_anchored") {
    return `not anchored yet (the supervision chain has anchored up to block ${anchor.anchored_height})`;
  }
  return `anchoring not known: ${anchor.reason || "no supervision API"}`;
}

// One sentence per deposit: "Deposited by ORG at TIME in block H (anchored at supervision height S)".
export function answerOf(d) {
  const withdrawn = d.withdrawn ? " — WITHDRAWN" : "";
  return `Deposited by ${d.depositor_org} at ${fmtTime(d.time_ms)} in block ${d.height} (${anchorText(d.anchor)})${withdrawn}`;
}

function depositCard(d) {
  const box = el("section", undefined, { class: "card deposit", "data-deposit": d.deposit_id });
  box.appendChild(el("p", answerOf(d), { class: d.withdrawn ? "answer withdrawn" : "answer found" }));
  const table = el("table", undefined, { class: "kv" });
  table.appendChild(el("tbody"));
  box.appendChild(table);
  const rows = [
    ["deposit", d.deposit_id],
    ["depositor", d.depositor],
    ["organization", d.depositor_org],
    ["block", d.height],
    ["block time", fmtTime(d.time_ms)],
    ["size (bytes)", d.size],
    ["suite hash", d.suite_hash],
    ["version", d.version],
    ["previous version", d.previous || "—"],
    ["next version", d.next || "—"],
    ["withdrawn", d.withdrawn ? "yes" : "no"],
  ];
  if (d.access !== "public") {
    rows.push(["type", d.doc_type], ["title", d.title], ["project", d.project]);
  } else {
    rows.push(["title, project, type", "only for the depositor's organization and the regulator"]);
  }
  kvRows(table, rows);
  return box;
}

async function lookUp(file) {
  const out = $("notary-result");
  clear(out);
  $("notary-file").textContent = `${file.name} (${file.size.toLocaleString("en-US")} bytes)`;
  $("notary-sha256").textContent = "hashing in this page…";
  const digest = await sha256OfFile(file);
  $("notary-sha256").textContent = digest;
  const signed = Boolean(session.token());
  const found = await getJson(`/v1/notary/sha256/${seg(digest)}`, signed);
  const deposits = found.deposits || [];
  if (!deposits.length) {
    out.appendChild(
      el("p", `Not found: no deposit of this file on ${found.chain_id} (head height ${found.height}).`, {
        class: "answer not-found",
      }),
    );
    return;
  }
  for (const d of deposits) out.appendChild(depositCard(d));
}

export function setupNotary(showError) {
  const run = (file) => {
    if (!file) return;
    showError("");
    lookUp(file).catch((err) => {
      $("notary-sha256").textContent = "—";
      showError(err instanceof ApiError || err instanceof Error ? err.message : String(err));
    });
  };
  $("notary-input").addEventListener("change", (ev) => run(ev.target.files && ev.target.files[0]));
  const zone = $("notary-drop");
  zone.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    run(ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0]);
  });
}

// A deposit by number (#/notary/ND-...), for links from other pages.
export async function showDeposit(depositId) {
  const out = $("notary-result");
  clear(out);
  if (!depositId) return;
  const d = await getJson(`/v1/notary/deposits/${seg(depositId)}`, Boolean(session.token()));
  out.appendChild(depositCard(d.deposit));
}
