// The lmlm page: generate with lookups, inspect each looked-up fact, edit or forget it, regenerate.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "lmlm-api-key";  // sessionStorage: the key lives as long as the tab, not on disk
let lastLookups = [];
let openFact = null;

async function api(method, path, body) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = data.error ? data.error.message : `HTTP ${response.status}`;
    throw new Error(response.status === 401 ? `${message}: enter the server's API key at the top of the page` : message);
  }
  return data;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// --- generation ---------------------------------------------------------------------------------------------

async function generate() {
  const prompt = $("prompt").value;
  if (!prompt.trim()) return;
  $("generate").disabled = true;
  status("Generating…");
  try {
    const started = performance.now();
    const result = await api("POST", "/v1/generate", {
      prompt, max_new_tokens: Number($("max-tokens").value), use_lookups: $("use-lookups").checked,
    });
    render(result);
    const n = result.lookups.length;
    status(`${n} lookup${n === 1 ? "" : "s"} · ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    status(e.message, true);
  } finally {
    $("generate").disabled = false;
  }
}

function render(result) {
  lastLookups = result.lookups;
  const out = $("output");
  out.replaceChildren();
  out.dataset.generation = Number(out.dataset.generation || 0) + 1;  // lets tests and scripts wait for a new result
  for (const seg of result.segments) {
    if (seg.fact === undefined || seg.fact === null) {
      out.append(document.createTextNode(seg.text));
      continue;
    }
    const fact = result.lookups[seg.fact];
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "fact" + (seg.text ? "" : " missed");
    chip.textContent = seg.text || fact.value || "no answer";
    chip.dataset.fact = seg.fact;
    chip.setAttribute("aria-label", `${chip.textContent}: ${fact.entity}, ${fact.relation} (${fact.tier})`);
    out.append(chip);
  }
  $("raw").textContent = result.raw;
}

function describe(fact) {
  const score = { exact: "exact match", none: "not in the knowledge base", nearest: `nearest, score ${fact.score.toFixed(2)}` }[fact.tier]
    || `score ${fact.score.toFixed(2)}`;
  return `<b>${escapeHtml(fact.entity)}</b> · ${escapeHtml(fact.relation)}<br>→ ${escapeHtml(fact.value || "(no value)")}` +
    `<br><span>${fact.tier} · ${score}${fact.triplet_id ? ` · fact #${fact.triplet_id}` : ""}</span>`;
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function showTooltip(chip) {
  const tip = $("tooltip");
  tip.innerHTML = describe(lastLookups[chip.dataset.fact]);
  tip.hidden = false;
  const box = chip.getBoundingClientRect();
  tip.style.left = `${Math.min(box.left, window.innerWidth - tip.offsetWidth - 8)}px`;
  tip.style.top = `${box.bottom + 6}px`;
}

function hideTooltip() { $("tooltip").hidden = true; }

// --- editing a fact -----------------------------------------------------------------------------------------

function openDialog(index) {
  const fact = lastLookups[index];
  openFact = fact;
  const details = $("fact-details");
  details.replaceChildren();
  for (const [name, value] of [["Entity", fact.entity], ["Relation", fact.relation], ["Tier", fact.tier],
                               ["Score", fact.score.toFixed(3)], ["Fact id", fact.triplet_id ?? "none"]]) {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    details.append(dt, dd);
  }
  $("fact-value").value = fact.value || "";
  $("fact-save").disabled = !fact.triplet_id;
  $("fact-forget").textContent = `Forget ${fact.entity}`;
  hideTooltip();
  $("fact-dialog").showModal();
  $("fact-value").focus();
}

async function closeDialog(action) {
  const fact = openFact;
  if (!fact || action === "cancel" || !action) return;
  try {
    if (action === "save") {
      await api("PUT", `/v1/kb/triplets/${fact.triplet_id}`, { value: $("fact-value").value });
      status(`Saved: ${fact.entity} · ${fact.relation} → ${$("fact-value").value}`);
    } else if (action === "forget") {
      const done = await api("POST", "/v1/kb/forget", { entity: fact.entity });
      status(`Forgot ${done.forgotten} fact(s) of ${fact.entity}`);
    }
    await generate();
    await search();
    showStats();
  } catch (e) {
    status(e.message, true);
  }
}

// --- the KB browser -----------------------------------------------------------------------------------------

async function search(entity) {
  const q = $("search").value.trim();
  const table = $("facts");
  if (!q && !entity) { table.hidden = true; return; }
  try {
    const data = entity ? await api("GET", `/v1/kb/entity/${encodeURIComponent(entity)}`)
                        : await api("GET", `/v1/kb/search?q=${encodeURIComponent(q)}&limit=50`);
    const rows = entity ? data.facts : data.results;
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const t of rows) {
      const tr = document.createElement("tr");
      const name = document.createElement("button");
      name.type = "button"; name.className = "quiet"; name.textContent = t.entity;
      name.title = `All facts of ${t.entity}`;
      name.addEventListener("click", () => { $("search").value = t.entity; search(t.entity); });
      const del = document.createElement("button");
      del.type = "button"; del.className = "danger"; del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${t.entity} ${t.relation}`);
      del.addEventListener("click", async () => {
        try { await api("DELETE", `/v1/kb/triplets/${t.id}`); tr.remove(); status(`Deleted fact #${t.id}`); }
        catch (e) { status(e.message, true); }
      });
      const cells = [name, t.relation, t.value, del].map((c) => {
        const td = document.createElement("td"); td.append(c); return td;
      });
      tr.append(...cells);
      body.append(tr);
    }
    table.hidden = rows.length === 0;
    if (!rows.length) status(`Nothing found for “${entity || q}”`);
  } catch (e) {
    table.hidden = true;
    status(e.message, true);
  }
}

async function showStats() {
  try {
    const s = await api("GET", "/v1/kb/stats");
    $("kb-stats").textContent = `${s.triplets} live facts · ${s.entities} entities`;
  } catch (e) { /* stats are a nicety */ }
}

// --- wiring -------------------------------------------------------------------------------------------------

$("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
$("api-key").addEventListener("input", () => {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
});
$("generate-form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
});
const output = $("output");
output.addEventListener("mouseover", (e) => { if (e.target.dataset.fact) showTooltip(e.target); });
output.addEventListener("mouseout", (e) => { if (e.target.dataset.fact) hideTooltip(); });
output.addEventListener("focusin", (e) => { if (e.target.dataset.fact) showTooltip(e.target); });
output.addEventListener("focusout", hideTooltip);
output.addEventListener("click", (e) => { if (e.target.dataset.fact) openDialog(Number(e.target.dataset.fact)); });
$("fact-dialog").addEventListener("close", () => closeDialog($("fact-dialog").returnValue));
$("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(); });
$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const t = await api("POST", "/v1/kb/triplets", {
      entity: $("add-entity").value, relation: $("add-relation").value, value: $("add-value").value,
    });
    status(`Added fact #${t.id}: ${t.entity} · ${t.relation} → ${t.value}`);
    $("add-form").reset();
    $("search").value = t.entity;
    await search(t.entity);
    showStats();
  } catch (err) { status(err.message, true); }
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") hideTooltip(); });
showStats();
