"use strict";
(() => {
  const meta = window.DATAGEN_META;
  const entries = [].concat(...(window.DATAGEN_PAGES || []));
  entries.forEach((entry, i) => { entry.order = i; });
  const $ = (id) => document.getElementById(id);
  const state = { task: "", status: "", reason: "", sort: "", dir: "desc", page: 0 };

  // Every string from the data goes in as textContent, attribute values or dataset: never as markup.
  function node(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }
  function option(value, label) {
    const element = node("option", "", label);
    element.value = value;
    return element;
  }
  function fill(select, values, all) {
    select.append(option("", all), ...values.map((value) => option(value, value)));
  }
  fill($("f-task"), meta.tasks, "all tasks");
  fill($("f-status"), meta.statuses, "all statuses");
  fill($("f-reason"), meta.reasons, "all reasons");
  fill($("sort"), meta.scores, "sample order");
  $("sort").firstChild.textContent = "sample order (kept first)";

  function gate(task, score) {
    const spec = (meta.filters[task] || {})[score];
    if (!spec || (spec.min === null && spec.max === null)) return null;
    return spec;
  }
  function gateText(spec, task) {
    const parts = [];
    if (spec.min !== null && spec.min !== undefined) parts.push("≥ " + spec.min);
    if (spec.max !== null && spec.max !== undefined) parts.push("≤ " + spec.max);
    const off = spec.enabled === false || meta.enforced[task] === false;
    return parts.join(", ") + (off ? " (off)" : "");
  }
  function fails(spec, value) {
    return (spec.min !== null && spec.min !== undefined && value < spec.min)
      || (spec.max !== null && spec.max !== undefined && value > spec.max);
  }
  const missing = (value) => value === null || value === undefined;

  function shown() {
    let rows = entries.filter((e) => (!state.task || e.task === state.task)
      && (!state.status || e.status === state.status) && (!state.reason || e.reason === state.reason));
    if (state.sort) {
      const sign = state.dir === "asc" ? 1 : -1;
      rows = rows.slice().sort((a, b) => {
        const x = a.scores[state.sort], y = b.scores[state.sort];
        if (missing(x) || missing(y)) return (missing(x) - missing(y)) || (a.order - b.order);
        return sign * (x - y) || (a.order - b.order);
      });
    }
    return rows;
  }

  const SHOWN_APART = ["line", "lines"];  // a text edit's lines read by the OCR: captions, not the params line

  function parsed(text) {
    try {
      const value = JSON.parse(text);
      return value && typeof value === "object" ? value : null;
    } catch (error) {
      return null;
    }
  }

  function params(text) {
    const value = parsed(text);
    if (!value) return text;
    return Object.entries(value).filter(([k]) => !SHOWN_APART.includes(k))
      .map(([k, v]) => k + "=" + JSON.stringify(v)).join(" · ");
  }

  function thumb(entry, role) {
    const figure = node("figure", "thumb");
    const src = entry.thumbs && entry.thumbs[role];
    if (src) {
      const img = node("img");
      img.src = src;
      img.alt = role + " of " + entry.key;
      img.width = 128;
      img.height = 128;
      figure.append(img);
    } else {
      figure.append(node("div", "placeholder", "thumbnail missing (see the warnings)"));
    }
    figure.append(node("figcaption", "", role));
    return figure;
  }

  function caption(label, text) {
    const line = node("div", "caption");
    line.append(node("b", "", label), document.createTextNode(text || "–"));
    return line;
  }

  function card(entry) {
    const row = node("article", "pair");
    row.dataset.task = entry.task;
    row.dataset.status = entry.status;
    row.dataset.key = entry.key;
    const thumbs = node("div", "thumbs");
    if (entry.thumbs || entry.status === "kept") {
      thumbs.append(thumb(entry, "input"), thumb(entry, "output"), thumb(entry, "mask"));
    } else {
      thumbs.append(node("div", "placeholder wide", meta.keeps_rejected
        ? "no images: this sample failed before any candidate was rendered (" + entry.status + ")"
        : "images not stored (" + entry.status + "): only the kept candidate of a sample goes into the tar; "
          + "pipeline.keep_rejected stores the others"));
    }
    const text = node("div", "text");
    const head = node("div", "head");
    head.append(node("span", "badge", entry.status), node("span", "task", entry.task),
      node("span", "key", entry.key + " · candidate " + entry.candidate
        + (entry.width ? " · " + entry.width + "×" + entry.height : "")));
    text.append(head, node("div", "instruction", entry.instruction || "(no instruction)"),
      caption("input", entry.input_caption), caption("output", entry.output_caption));
    if (entry.objects.length) text.append(caption("objects", entry.objects.join(", ")));
    const edit = parsed(entry.params) || {};
    if (edit.line) text.append(caption("text read (OCR)", edit.line.text));
    if (edit.read_after !== undefined) text.append(caption("read after the edit", edit.read_after || "(nothing)"));
    if (entry.instruction_rewritten) text.append(caption("edit done (judge)", entry.instruction_rewritten));
    if (entry.judge_reasoning) text.append(caption("judge", entry.judge_reasoning));
    if (entry.reason) text.append(node("div", "reason", entry.reason + (entry.detail ? ": " + entry.detail : "")));
    if (entry.params) text.append(node("div", "params", params(entry.params)));
    const scores = node("table", "scores");
    for (const score of meta.scores) {
      const value = entry.scores[score];
      if (missing(value)) continue;
      const spec = gate(entry.task, score);
      const tr = node("tr", (spec && fails(spec, value) ? "fail" : "") + (score === state.sort ? " sorted" : ""));
      const cell = node("td", "v", value.toFixed(4));
      cell.dataset.score = score;
      cell.dataset.value = String(value);
      tr.append(node("td", "", score), cell, node("td", "g", spec ? gateText(spec, entry.task) : ""));
      scores.append(tr);
    }
    row.append(thumbs, text, scores);
    return row;
  }

  function render() {
    const rows = shown();
    const pages = Math.max(1, Math.ceil(rows.length / meta.page_size));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    const start = state.page * meta.page_size;
    const list = $("pairs");
    list.replaceChildren(...rows.slice(start, start + meta.page_size).map(card));
    if (!rows.length) list.append(node("p", "empty", "No sampled candidate matches these filters."));
    $("page-info").textContent = "page " + (state.page + 1) + " of " + pages + " · " + rows.length + " candidates";
    for (const id of ["prev", "prev-bottom"]) $(id).disabled = state.page === 0;
    for (const id of ["next", "next-bottom"]) $(id).disabled = state.page >= pages - 1;
    let population = 0;
    for (const [stratum, n] of Object.entries(meta.strata)) {
      const [task, status] = stratum.split("/");
      if ((!state.task || task === state.task) && (!state.status || status === state.status)) population += n;
    }
    $("gallery-note").textContent = "A deterministic sample of " + entries.length + " of "
      + Object.values(meta.strata).reduce((a, b) => a + b, 0) + " candidates (at most " + meta.gallery
      + ", shared evenly over task × status); these filters match " + population + " candidates in the run. "
      + (meta.keeps_rejected ? "Rejected and outranked candidates' images come from the shards' rejected tars."
        : "Rejected candidates have no stored images (pipeline.keep_rejected would store them).");
  }

  const controls = { "f-task": "task", "f-status": "status", "f-reason": "reason", "sort": "sort", "sort-dir": "dir" };
  for (const [id, key] of Object.entries(controls)) {
    $(id).addEventListener("change", (event) => { state[key] = event.target.value; state.page = 0; render(); });
  }
  function step(delta, scroll) {
    state.page += delta;
    render();
    if (scroll) $("gallery").scrollIntoView();
  }
  $("prev").addEventListener("click", () => step(-1, false));
  $("next").addEventListener("click", () => step(1, false));
  $("prev-bottom").addEventListener("click", () => step(-1, true));
  $("next-bottom").addEventListener("click", () => step(1, true));
  render();
})();
