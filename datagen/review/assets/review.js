// datagen review: label one item at a time from the keyboard. Every text goes in with textContent.
"use strict";
(function () {
  const token = document.querySelector('meta[name="token"]').content;
  const $ = (id) => document.getElementById(id);
  const KEY = "datagen-review-annotator";
  const VERDICT_KEYS = { g: "good", b: "bad", u: "unsure" };
  const ASPECT_KEYS = { 1: "follows", 2: "preserves", 3: "looks_right" };
  let items = [], labelled = new Set(), current = -1, aspects = {}, revealed = false, busy = false;

  function api(path) {
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }
  function fail(message) { $("error").textContent = message; }

  async function start() {
    const name = localStorage.getItem(KEY);
    $("switch").hidden = !name;
    if (!name) { $("name-form").hidden = false; $("item").hidden = true; $("name").focus(); return; }
    $("name-form").hidden = true;
    $("who").textContent = "annotator: " + name;
    const response = await fetch(api("/api/state?annotator=" + encodeURIComponent(name)));
    if (!response.ok) { fail("cannot load the items: " + (await response.text())); return; }
    const state = await response.json();
    items = state.items;
    labelled = new Set(state.labelled);
    show(next(-1));
  }

  function next(after) {
    for (let i = after + 1; i < items.length; i++) if (!labelled.has(items[i].id)) return i;
    for (let i = 0; i <= after && i < items.length; i++) if (!labelled.has(items[i].id)) return i;
    return -1;
  }

  function progress() {
    $("progress").textContent = labelled.size + " of " + items.length + " labelled";
  }

  function show(index) {
    current = index; aspects = {}; revealed = false;
    progress();
    $("reveal").hidden = true;
    $("aspects").textContent = "";
    if (index < 0) { $("item").hidden = true; $("done").hidden = false; return; }
    $("done").hidden = true;
    $("item").hidden = false;
    const item = items[index];
    $("task").textContent = item.task;
    $("number").textContent = (index + 1) + " / " + items.length;
    $("instruction").textContent = item.instruction;
    for (const member of ["input", "output", "mask"]) {
      const img = $("img-" + member);
      if (item.images.includes(member)) { img.src = api("/api/image/" + item.id + "/" + member); img.hidden = false; }
      else { img.removeAttribute("src"); img.hidden = true; }
    }
  }

  function drawAspects() {
    const box = $("aspects");
    box.textContent = "";
    for (const [name, on] of Object.entries(aspects)) {
      if (!on) continue;
      const tag = document.createElement("span");
      tag.textContent = name.replace("_", " ");
      box.appendChild(tag);
    }
  }

  async function label(verdict) {
    busy = true;
    const item = items[current];
    const body = JSON.stringify({ id: item.id, label: verdict, aspects: aspects, annotator: localStorage.getItem(KEY) });
    try {
      const response = await fetch(api("/api/label"), { method: "POST", headers: { "Content-Type": "application/json" }, body: body });
      const answer = await response.json();
      if (!response.ok) { fail("not saved: " + answer.error); return; }
      fail("");
      labelled.add(item.id);
      progress();
      reveal(verdict, answer);
    } catch (e) {
      fail("not saved (is `datagen review` still running?): " + e);
    } finally {
      busy = false;
    }
  }

  function reveal(verdict, answer) {
    revealed = true;
    $("given").textContent = verdict;
    $("verdict").textContent = answer.status;
    $("reason").textContent = answer.reason ? "(" + answer.reason + ")" : "";
    const table = $("scores");
    table.textContent = "";
    for (const [name, value] of Object.entries(answer.scores).sort()) {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = value.toFixed(4);
    }
    $("reveal").hidden = false;
    document.body.dataset.saved = String(labelled.size);
  }

  document.addEventListener("keydown", (event) => {
    if (current < 0 || busy || $("item").hidden || event.target.tagName === "INPUT") return;
    if (event.key === "Enter" && revealed) { show(next(current)); return; }
    if (event.key === "ArrowLeft" && current > 0) { show(current - 1); return; }
    if (revealed) return;
    if (VERDICT_KEYS[event.key]) { label(VERDICT_KEYS[event.key]); return; }
    if (ASPECT_KEYS[event.key]) { const a = ASPECT_KEYS[event.key]; aspects[a] = !aspects[a]; drawAspects(); }
  });

  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!/^[a-z0-9][a-z0-9_-]{0,39}$/.test(name)) { fail("a name of 1-40 lower-case letters, digits, _ or -"); return; }
    localStorage.setItem(KEY, name);
    fail("");
    start();
  });
  $("switch").addEventListener("click", () => { localStorage.removeItem(KEY); $("name").value = ""; start(); });

  start().catch((e) => fail(String(e)));
})();
