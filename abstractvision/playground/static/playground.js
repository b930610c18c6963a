// abstractvision playground: plain JS, no build step, no third-party code.
// Talks to /playground/api with the bearer token kept in sessionStorage; streams job progress and
// new artifacts over server-sent events read with fetch (EventSource cannot send a token).
"use strict";

const API = "/playground/api";
const TOKEN_KEY = "abstractvision.token";
const PAGE_SIZE = 12;
const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  tools: null,            // {tasks, schemas, backend, model, gallery}
  inputs: {},             // image field -> {value, url, label}
  job: null,              // {id, abort}
  page: 0,
  total: 0,
  items: new Map(),       // artifact id -> gallery item (this page and fresh results)
  selected: new Map(),    // artifact id -> item, for compare
  blobs: new Map(),       // "id/kind" -> object URL
  feed: null,             // AbortController of the artifact feed
  painter: null,
};
// What the browser test reads: timings measured in the page.
window.playground = { lastResultDelayMs: null, delays: [] };

class AuthNeeded extends Error {}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 2500);
}

// ---- HTTP ---------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    askToken(state.token ? "that token was refused" : "this server needs its token");
    throw new AuthNeeded("token needed");
  }
  return response;
}

async function apiJson(path, options) {
  const response = await api(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.status + " " + response.statusText;
    const error = new Error(message);
    error.field = body.error && body.error.field;
    throw error;
  }
  return body;
}

// Server-sent events over fetch: calls onEvent(name, data) per event until the stream ends.
async function readEvents(path, onEvent, signal) {
  const response = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!response.ok) throw new Error("event stream " + path + ": " + response.status);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      let data = "";
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

async function blobUrl(id, kind) {
  const key = id + "/" + kind;
  if (!state.blobs.has(key)) {
    const response = await api("/artifacts/" + id + "/" + kind);
    if (!response.ok) throw new Error(kind + " of " + id + ": " + response.status);
    state.blobs.set(key, URL.createObjectURL(await response.blob()));
  }
  return state.blobs.get(key);
}

// ---- token --------------------------------------------------------------------------------

function askToken(note) {
  $("#token-form").hidden = false;
  $("#token-note").textContent = note;
  $("#token").focus();
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("#token").value = "";
  $("#token-form").hidden = true;
  start();
});

$("#forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  location.reload();
});

// ---- the form: task, prompt, parameters, image inputs -------------------------------------

// An image input: the tool schema's "artifact ref object or string" (an object needing $artifact).
const isImageField = (schema) => Array.isArray(schema.anyOf) && schema.anyOf.some(
  (s) => (s.required || []).includes("$artifact") || (s.properties && s.properties.$artifact));

function currentSchema() {
  return state.tools.schemas[$("#task").value];
}

function boundsText(schema) {
  const parts = [];
  if (schema.minimum !== undefined || schema.maximum !== undefined) {
    parts.push((schema.minimum ?? "") + " \u2026 " + (schema.maximum ?? ""));
  }
  if (schema.multipleOf) parts.push("\u00d7" + schema.multipleOf);
  if (schema.maxLength) parts.push("\u2264 " + schema.maxLength + " chars");
  if (schema.maxItems) parts.push("\u2264 " + schema.maxItems + " items");
  return parts.join(", ");
}

function paramInput(name, schema) {
  const common = { name, id: "param-" + name, title: schema.description || name };
  if (Array.isArray(schema.enum)) {
    return el("select", common, el("option", { value: "", text: "(default)" }),
      schema.enum.map((v) => el("option", { value: String(v), text: String(v) })));
  }
  if (schema.type === "integer" || schema.type === "number") {
    return el("input", Object.assign(common, {
      type: "number",
      min: schema.minimum, max: schema.maximum,
      step: schema.multipleOf || (schema.type === "integer" ? 1 : "any"),
      placeholder: schema.default !== undefined ? String(schema.default) : "default",
    }));
  }
  if (schema.type === "boolean") {
    return el("select", common, el("option", { value: "", text: "(default)" }),
      el("option", { value: "true", text: "yes" }), el("option", { value: "false", text: "no" }));
  }
  if (schema.type === "array" || schema.type === "object") {
    return el("input", Object.assign(common, {
      type: "text", placeholder: schema.type === "array" ? "comma list or JSON" : "JSON object",
    }));
  }
  return el("input", Object.assign(common, { type: "text", maxLength: schema.maxLength }));
}

function renderForm() {
  const schema = currentSchema();
  const props = schema.properties;
  const required = new Set(schema.required || []);
  $("#prompt-label").hidden = !props.prompt;
  $("#prompt").required = required.has("prompt");
  $("#prompt").maxLength = (props.prompt && props.prompt.maxLength) || 10000;
  const box = $("#params");
  box.replaceChildren();
  for (const [name, field] of Object.entries(props)) {
    if (name === "prompt" || name === "wait_s" || isImageField(field) || isImageList(field)) continue;
    if (name === "extra" && !field.description) continue;
    const bounds = boundsText(field);
    box.append(el("label", { class: "param", title: field.description || "" },
      el("span", { class: "name", text: name + (required.has(name) ? " *" : "") }),
      paramInput(name, field),
      el("small", { class: "bounds", text: bounds })));
  }
  renderImages();
}

// A list of image inputs (e.g. reference_images): an array whose items are image fields.
const isImageList = (schema) => schema.type === "array" && !!schema.items && isImageField(schema.items);

function renderImages() {
  const props = currentSchema().properties;
  const box = $("#images");
  box.replaceChildren();
  const fields = Object.entries(props)
    .filter(([, s]) => isImageField(s) || isImageList(s)).map(([n]) => n);
  for (const name of Object.keys(state.inputs)) {
    if (!fields.includes(name)) delete state.inputs[name];
  }
  for (const name of fields) {
    if (name === "mask" && fields.includes("image")) continue; // painted on the image below
    box.append(imageSlot(name, props[name]));
  }
  if (fields.includes("mask") && fields.includes("image")) box.append(maskPainter());
}

function imageSlot(name, schema) {
  const many = isImageList(schema);
  const chosen = state.inputs[name];
  const entries = chosen ? (many ? chosen.list : [chosen]) : [];
  const file = el("input", { type: "file", accept: "image/*", hidden: true, multiple: many,
    onchange: () => [...file.files].forEach((f) => readFile(name, f)) });
  const hint = many
    ? `drop images, click to upload, or pick them in the gallery (at most ${schema.maxItems || "any"})`
    : "drop an image, click to upload, or pick one in the gallery";
  const zone = el("div", {
    class: "drop" + (entries.length ? " filled" : ""), tabIndex: 0, "data-field": name,
    title: schema.description || name,
    onclick: () => file.click(),
    onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") file.click(); },
    ondragover: (e) => { e.preventDefault(); zone.classList.add("over"); },
    ondragleave: () => zone.classList.remove("over"),
    ondrop: (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const ref = e.dataTransfer.getData("application/x-abstractvision-artifact");
      if (ref) setArtifactInput(name, state.items.get(ref));
      else [...e.dataTransfer.files].slice(0, many ? undefined : 1).forEach((f) => readFile(name, f));
    },
  },
  entries.map((entry) => el("img", { src: entry.url, alt: name, class: "chosen", title: entry.label })),
  el("span", { text: entries.length ? entries.map((e) => e.label).join(", ") : hint }));
  const clear = entries.length ? el("button", { type: "button", class: "link", text: "clear",
    onclick: () => { delete state.inputs[name]; renderImages(); } }) : null;
  return el("div", { class: "slot" }, el("span", { class: "name", text: name }), zone, file, clear);
}

function addInput(name, entry) {
  const schema = currentSchema().properties[name];
  if (isImageList(schema)) {
    const current = state.inputs[name] || { list: [] };
    if (schema.maxItems && current.list.length >= schema.maxItems) {
      showError(`${name} takes at most ${schema.maxItems} images`);
      return;
    }
    current.list.push(entry);
    state.inputs[name] = current;
  } else {
    state.inputs[name] = entry;
  }
  renderImages();
}

function readFile(name, file) {
  if (!file.type.startsWith("image/")) { showError(name + ": " + file.name + " is not an image"); return; }
  const reader = new FileReader();
  reader.onload = () => addInput(name, { value: reader.result, url: reader.result, label: file.name });
  reader.readAsDataURL(file);
}

async function setArtifactInput(name, item) {
  if (!item) return;
  const url = await blobUrl(item.id, "content");
  addInput(name, { value: { $artifact: item.id }, url, label: "artifact " + item.id.slice(0, 8) });
}

// ---- mask painter: white strokes (change) on black (keep), at the image's own size ----------

function maskPainter() {
  const image = state.inputs.image;
  const wrap = el("div", { class: "slot" }, el("span", { class: "name", text: "mask" }));
  if (!image) {
    wrap.append(el("span", { class: "muted", text: "choose an image, then paint where it should change" }));
    state.painter = null;
    return wrap;
  }
  const picture = el("img", { src: image.url, alt: "image to paint on" });
  const canvas = el("canvas", { class: "paint", id: "mask-canvas" });
  const brush = el("input", { type: "range", min: 2, max: 200, value: 24, id: "brush" });
  const painter = { canvas, painted: false };
  state.painter = painter;
  picture.addEventListener("load", () => {
    canvas.width = picture.naturalWidth;
    canvas.height = picture.naturalHeight;
    brush.max = Math.max(8, Math.round(Math.max(canvas.width, canvas.height) / 2));
    brush.value = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 10));
  });
  const ctx = canvas.getContext("2d");
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
      (event.clientY - box.top) * canvas.height / box.height];
  };
  const stroke = (from, to) => {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = Number(brush.value);
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
    painter.painted = true;
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    stroke(last, next);
    last = next;
  });
  const end = () => { last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  const clear = el("button", { type: "button", class: "link", text: "clear mask",
    onclick: () => { ctx.clearRect(0, 0, canvas.width, canvas.height); painter.painted = false; } });
  wrap.append(el("div", { class: "stage" }, picture, canvas),
    el("label", { class: "row" }, "brush ", brush), clear,
    el("span", { class: "muted", text: " paint where the image should change (unpainted: whole image)" }));
  return wrap;
}

function maskValue() {
  const painter = state.painter;
  if (!painter || !painter.painted) return null;
  const out = document.createElement("canvas");
  out.width = painter.canvas.width;
  out.height = painter.canvas.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(painter.canvas, 0, 0);
  return out.toDataURL("image/png");
}

// ---- collecting and checking parameters against the schema's bounds ------------------------

function fieldError(name, message) {
  const error = new Error(message);
  error.field = name;
  return error;
}

function parseValue(name, schema, raw) {
  if (schema.type === "integer" || schema.type === "number") {
    const value = Number(raw);
    if (!Number.isFinite(value)) throw fieldError(name, `${name}=${raw} is not a number`);
    if (schema.type === "integer" && !Number.isInteger(value)) {
      throw fieldError(name, `${name}=${raw} must be a whole number`);
    }
    if (schema.minimum !== undefined && value < schema.minimum) {
      throw fieldError(name, `${name}=${raw} is below the minimum ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      throw fieldError(name, `${name}=${raw} is above the maximum ${schema.maximum}`);
    }
    if (schema.multipleOf && value % schema.multipleOf !== 0) {
      throw fieldError(name, `${name}=${raw} must be a multiple of ${schema.multipleOf}`);
    }
    return value;
  }
  if (schema.type === "boolean") return raw === "true";
  if (schema.type === "array") {
    let value;
    try { value = JSON.parse(raw); } catch (e) { value = raw.split(",").map((s) => s.trim()).filter(Boolean); }
    if (!Array.isArray(value)) value = [value];
    if (schema.items && schema.items.type === "integer") value = value.map(Number);
    if (schema.maxItems && value.length > schema.maxItems) {
      throw fieldError(name, `${name} has ${value.length} items; at most ${schema.maxItems}`);
    }
    return value;
  }
  if (schema.type === "object") {
    try { return JSON.parse(raw); } catch (e) { throw fieldError(name, `${name} must be a JSON object`); }
  }
  if (schema.maxLength && raw.length > schema.maxLength) {
    throw fieldError(name, `${name} has ${raw.length} characters; at most ${schema.maxLength}`);
  }
  return raw;
}

function collectParams() {
  const schema = currentSchema();
  const params = {};
  const prompt = $("#prompt").value.trim();
  if (schema.properties.prompt && prompt) params.prompt = parseValue("prompt", schema.properties.prompt, prompt);
  for (const input of $("#params").querySelectorAll("[name]")) {
    input.classList.remove("invalid");
    if (input.value.trim() === "") continue;
    try {
      params[input.name] = parseValue(input.name, schema.properties[input.name], input.value.trim());
    } catch (error) {
      input.classList.add("invalid");
      input.focus();
      throw error;
    }
  }
  for (const [name, chosen] of Object.entries(state.inputs)) {
    params[name] = chosen.list ? chosen.list.map((entry) => entry.value) : chosen.value;
  }
  const mask = maskValue();
  if (mask) params.mask = mask;
  for (const name of schema.required || []) {
    if (params[name] === undefined) throw fieldError(name, `${name} is required`);
  }
  return params;
}

function showError(message) {
  $("#error").textContent = message || "";
}

// ---- running a job: progress, ETA, cancel, result ----------------------------------------

$("#gen-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  let params;
  try {
    params = collectParams();
  } catch (error) {
    showError(error.message);
    return;
  }
  setRunning(true);
  progress(0, null, "queued");
  try {
    const { job_id: id } = await apiJson("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task: $("#task").value, params }),
    });
    await follow(id);
  } catch (error) {
    if (!(error instanceof AuthNeeded)) showError(error.message);
  } finally {
    setRunning(false);
  }
});

$("#cancel").addEventListener("click", async () => {
  if (!state.job) return;
  $("#cancel").disabled = true;
  progress(null, null, "cancelling\u2026");
  await apiJson("/jobs/" + state.job.id + "/cancel", { method: "POST" }).catch((e) => showError(e.message));
});

function setRunning(running) {
  $("#generate").disabled = running;
  $("#cancel").disabled = !running;
  document.body.classList.toggle("running", running);
  if (!running) state.job = null;
}

function progress(step, total, text) {
  $("#output").hidden = false;
  const bar = $("#bar");
  if (total) { bar.max = total; bar.value = step; } else if (step === 0) { bar.removeAttribute("value"); }
  $("#progress-text").textContent = text;
}

async function follow(id) {
  const abort = new AbortController();
  state.job = { id, abort };
  document.body.dataset.job = id;
  let finished = null;
  await readEvents("/jobs/" + id + "/events", (name, data) => {
    if (name === "progress") {
      const eta = data.eta_s !== null && data.eta_s !== undefined ? ` \u00b7 ETA ${data.eta_s.toFixed(1)} s` : "";
      const of = data.total ? `step ${data.step} of ${data.total}` : data.message || `step ${data.step}`;
      progress(data.step, data.total, of + eta);
    } else if (name === "status") {
      progress(0, null, data.status);
    } else if (name === "done") {
      finished = data;
    }
  }, abort.signal);
  if (!finished) throw new Error("the progress stream ended early");
  if (finished.status !== "succeeded") {
    progress(null, null, finished.status + (finished.error ? ": " + finished.error : ""));
  } else {
    progress(1, 1, "done");
    await showResult(finished.items, finished.finished_at);
  }
  document.body.dataset.jobStatus = finished.status; // what the browser test waits for
}

async function mediaElement(item, kind) {
  const url = await blobUrl(item.id, kind);
  const video = kind === "content" && (item.content_type || "").startsWith("video/");
  const node = video
    ? el("video", { src: url, controls: true, loop: true, muted: true, autoplay: true, playsInline: true })
    : el("img", { src: url, alt: item.prompt || item.id });
  await new Promise((resolve) => {
    if (video) { node.addEventListener("loadeddata", resolve, { once: true }); }
    else if (node.complete) { resolve(); }
    else { node.addEventListener("load", resolve, { once: true }); }
    node.addEventListener("error", resolve, { once: true });
  });
  if (!video && node.decode) await node.decode().catch(() => null);
  return node;
}

async function showResult(items, finishedAt) {
  const box = $("#result");
  box.replaceChildren();
  const shown = await Promise.all(items.map((item) => mediaElement(item, "content")));
  items.forEach((item, i) => {
    state.items.set(item.id, item);
    box.append(el("figure", { "data-id": item.id }, shown[i], el("figcaption", { text: caption(item) })));
  });
  const delay = Date.now() - finishedAt * 1000;
  window.playground.lastResultDelayMs = delay;
  window.playground.delays.push(delay);
  box.dataset.delayMs = String(Math.round(delay));
  box.append(el("p", { class: "muted", text: `shown ${Math.round(delay)} ms after the job finished` }));
  for (const item of items) addToGallery(item, true);
}

function caption(item) {
  const bits = [];
  if (item.width && item.height) bits.push(item.width + "\u00d7" + item.height);
  if (item.seed !== undefined && item.seed !== null) bits.push("seed " + item.seed);
  if (item.model) bits.push(String(item.model).split("/").slice(-1)[0]);
  const total = Object.entries(item.timings || {}).filter(([k]) => /generate|total/.test(k));
  if (total.length) bits.push(Number(total[0][1]).toFixed(2) + " s");
  return bits.join(" \u00b7 ");
}

// ---- gallery -------------------------------------------------------------------------------

async function loadGallery() {
  const body = await apiJson(`/artifacts?offset=${state.page * PAGE_SIZE}&limit=${PAGE_SIZE}`);
  state.total = body.total;
  const grid = $("#gallery");
  grid.replaceChildren();
  if (!body.listing) grid.append(el("p", { class: "muted", text: "this store cannot list its artifacts" }));
  for (const item of body.items) grid.append(card(item));
  pageLabel();
}

function pageLabel() {
  const pages = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
  $("#page-label").textContent = `page ${state.page + 1} of ${pages}`;
  $("#gallery-count").textContent = `${state.total} artifact${state.total === 1 ? "" : "s"}`;
  $("#prev").disabled = state.page === 0;
  $("#next").disabled = state.page + 1 >= pages;
}

function addToGallery(item, fresh) {
  if (state.page !== 0 || document.querySelector(`.card[data-id="${item.id}"]`)) return;
  state.total += 1;
  const grid = $("#gallery");
  const node = card(item);
  if (fresh) node.classList.add("fresh");
  grid.prepend(node);
  while (grid.children.length > PAGE_SIZE) grid.lastElementChild.remove();
  pageLabel();
}

function card(item) {
  state.items.set(item.id, item);
  const thumb = el("img", { alt: item.prompt || item.id, class: "thumb", draggable: true });
  thumb.addEventListener("dragstart", (e) => e.dataTransfer.setData("application/x-abstractvision-artifact", item.id));
  thumb.addEventListener("click", () => showDetails(item));
  blobUrl(item.id, "thumbnail").then((url) => { thumb.src = url; }).catch(() => { thumb.alt = "no preview"; });
  const pick = el("input", { type: "checkbox", title: "compare", class: "pick",
    checked: state.selected.has(item.id),
    onchange: () => {
      if (pick.checked) state.selected.set(item.id, item); else state.selected.delete(item.id);
      const n = state.selected.size;
      $("#compare-btn").disabled = n < 2;
      $("#compare-btn").textContent = n ? `Compare (${n})` : "Compare";
    } });
  const kind = (item.content_type || "").split("/")[0];
  return el("div", { class: "card", "data-id": item.id },
    el("div", { class: "frame" }, thumb, kind === "video" ? el("span", { class: "badge", text: "video" }) : null),
    el("div", { class: "meta" },
      el("div", { class: "prompt", text: item.prompt || item.task || "(no prompt)", title: item.prompt || "" }),
      el("div", { class: "muted", text: caption(item) })),
    el("div", { class: "tools" },
      el("label", { class: "pickl" }, pick, "compare"),
      el("button", { type: "button", class: "use", text: "use as input", onclick: () => useAsInput(item) }),
      el("button", { type: "button", class: "download", text: "download", onclick: () => download(item) }),
      el("button", { type: "button", class: "copy", text: "copy ref", onclick: () => copyRef(item) })));
}

function showDetails(item) {
  const box = $("#details");
  box.hidden = false;
  const rows = [["id", item.id], ["task", item.task], ["prompt", item.prompt], ["seed", item.seed],
    ["model", item.model], ["size", item.width && `${item.width}\u00d7${item.height}`],
    ["created", item.created_at], ["bytes", item.size_bytes]];
  for (const [k, v] of Object.entries(item.params || {})) if (!["prompt", "seed"].includes(k)) rows.push([k, JSON.stringify(v)]);
  for (const [k, v] of Object.entries(item.timings || {})) rows.push([k, Number(v).toFixed(3) + " s"]);
  box.replaceChildren(
    el("div", { class: "bar" }, el("h3", { text: "Details" }), el("span", { class: "grow" }),
      el("button", { type: "button", text: "Close", onclick: () => { box.hidden = true; } })),
    el("table", {}, rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
      .map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: String(v) })))));
  mediaElement(item, "content").then((node) => box.insertBefore(node, box.children[1])).catch(() => null);
}

function useAsInput(item) {
  // The main image of a task (image, reference_image); a control image is picked by dropping.
  const mainField = (task) => ["image", "reference_image"]
    .find((n) => n in state.tools.schemas[task].properties);
  let task = $("#task").value;
  if (!mainField(task)) {
    const tasks = state.tools.tasks;
    task = tasks.find((t) => t === "image_to_image") || tasks.find((t) => mainField(t));
    if (!task) { toast("no task here takes an input image"); return; }
    $("#task").value = task;
    renderForm();
  }
  const field = mainField(task);
  if (item.prompt && !$("#prompt").value) $("#prompt").value = item.prompt;
  setArtifactInput(field, item).then(() => toast(`${field} = artifact ${item.id.slice(0, 8)}`));
}

async function download(item) {
  const response = await api("/artifacts/" + item.id + "/content?download=1");
  const ext = (item.content_type || "application/bin").split("/")[1];
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `${item.id}.${ext}` });
  document.body.append(link);
  link.click();
  link.remove();
}

async function copyRef(item) {
  const text = JSON.stringify({ $artifact: item.id, uri: `abstractvision://artifacts/${item.id}` });
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    const area = el("textarea", { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  document.body.dataset.copied = text;
  toast("copied " + text);
}

$("#prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); loadGallery(); });
$("#next").addEventListener("click", () => { state.page += 1; loadGallery(); });
$("#refresh").addEventListener("click", () => loadGallery().catch((e) => showError(e.message)));

// ---- compare -------------------------------------------------------------------------------

$("#compare-btn").addEventListener("click", async () => {
  const items = [...state.selected.values()];
  const keys = ["prompt", "seed", "model", "size", "steps", "guidance_scale", "strength", "task", "time"];
  const value = (item, key) => {
    if (key === "size") return item.width ? `${item.width}\u00d7${item.height}` : "";
    if (key === "time") return caption(item).split(" \u00b7 ").filter((b) => b.endsWith(" s")).join("");
    const v = item[key] ?? (item.params || {})[key];
    return v === undefined || v === null ? "" : String(v);
  };
  const grid = $("#compare-grid");
  grid.replaceChildren();
  grid.style.setProperty("--columns", String(items.length));
  const media = await Promise.all(items.map((item) => mediaElement(item, "content").catch(() => el("span", { text: "?" }))));
  items.forEach((item, i) => {
    const table = el("table", {}, keys.map((key) => {
      const differs = new Set(items.map((other) => value(other, key))).size > 1;
      return el("tr", { class: differs ? "differs" : "" }, el("th", { text: key }), el("td", { text: value(item, key) }));
    }));
    grid.append(el("div", { class: "column", "data-id": item.id }, media[i], table));
  });
  $("#compare").hidden = false;
});

$("#compare-close").addEventListener("click", () => { $("#compare").hidden = true; });

// ---- the artifact feed: what any client (MCP included) makes, as it lands ------------------

async function openFeed() {
  if (state.feed) state.feed.abort();
  const abort = new AbortController();
  state.feed = abort;
  const live = $("#live");
  for (let wait = 1000; !abort.signal.aborted; wait = Math.min(wait * 2, 15000)) {
    try {
      await readEvents("/events", (name, data) => {
        if (name === "hello") { live.textContent = "live"; live.classList.add("on"); wait = 1000; }
        if (name === "artifact") addToGallery(data.item, true);
      }, abort.signal);
    } catch (error) {
      if (error instanceof AuthNeeded || abort.signal.aborted) return;
    }
    live.textContent = "feed off";
    live.classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  try {
    state.tools = await apiJson("/tools");
  } catch (error) {
    if (!(error instanceof AuthNeeded)) showError("cannot reach the server: " + error.message);
    return;
  }
  $("#forget-token").hidden = !state.token;
  $("#backend").textContent = state.tools.backend + (state.tools.model ? " \u00b7 " + state.tools.model : "");
  const select = $("#task");
  const before = select.value;
  select.replaceChildren(...state.tools.tasks.map((t) => el("option", { value: t, text: t.replaceAll("_", " ") })));
  if (!state.tools.tasks.length) { showError("the backend lists no task it can run"); return; }
  if (state.tools.tasks.includes(before)) select.value = before;
  renderForm();
  document.body.dataset.ready = "1";
  loadGallery().catch((e) => { if (!(e instanceof AuthNeeded)) showError(e.message); });
  openFeed();
}

$("#task").addEventListener("change", renderForm);
start();
