// The page of `dinokit serve`: plain JavaScript against the service's own API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;

function token() { return $("token").value || localStorage.getItem("dinokit-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new Error("this server needs a token: enter it at the top right");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

// <img> cannot send the token: pictures are fetched and shown from blob URLs
async function showPicture(img, path) {
  try {
    const blob = await (await api(path)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (e) {
    img.alt = e.message;
  }
}

function setStatus(element, text, error = false) {
  element.textContent = text;
  element.classList.toggle("error", error);
}

function card(hit) {
  const div = document.createElement("div");
  div.className = "hit";
  const img = document.createElement("img");
  img.alt = hit.key;
  showPicture(img, "/v1/thumbnail?path=" + encodeURIComponent(hit.key));
  div.appendChild(img);
  if (hit.score !== undefined) {
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = hit.score.toFixed(4);
    div.appendChild(score);
  }
  const path = document.createElement("div");
  path.className = "path";
  path.textContent = hit.path;
  div.appendChild(path);
  div.addEventListener("click", () => openImage(hit));
  return div;
}

async function search(body, label) {
  const status = $("status");
  $("results").replaceChildren();
  setStatus(status, "searching…");
  try {
    const options = { method: "POST", body };
    if (typeof body === "string") options.headers = { "Content-Type": "application/json" };
    const response = await api("/v1/search", options);
    const hits = (await response.json()).results[0].hits;
    $("results").replaceChildren(...hits.map(card));
    setStatus(status, `${hits.length} nearest images of ${label}`);
  } catch (e) {
    setStatus(status, e.message, true);
  }
}

function searchImage(file) {
  if (!file) return;
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  $("query-preview").replaceChildren(preview);
  const form = new FormData();
  form.append("image", file, file.name || "pasted image");
  form.append("k", $("k").value);
  search(form, file.name || "the pasted image");
}

async function openImage(hit) {
  show("image");
  $("image-tab").disabled = false;
  $("image-path").textContent = hit.path;
  for (const [id, path] of [["image-full", "/v1/thumbnail?size=1024&path="], ["image-pca", "/v1/viz/pca?path="],
                            ["image-attention", "/v1/viz/attention?path="]]) {
    $(id).removeAttribute("src");
    showPicture($(id), path + encodeURIComponent(hit.key));
  }
}

async function loadDuplicates() {
  const status = $("dup-status");
  try {
    const groups = (await (await api("/v1/duplicates")).json()).groups;
    const rows = groups.map((group, i) => {
      const div = document.createElement("div");
      div.className = "group";
      const title = document.createElement("h3");
      title.textContent = `group ${i + 1} (${group.length} images)`;
      const grid = document.createElement("div");
      grid.className = "grid";
      grid.replaceChildren(...group.map(card));
      div.replaceChildren(title, grid);
      return div;
    });
    $("groups").replaceChildren(...rows);
    setStatus(status, groups.length ? `${groups.length} groups of near-duplicates`
      : "no duplicate groups: start the server with --duplicates DEDUP.json (from `dinokit dedup --json`)");
  } catch (e) {
    setStatus(status, e.message, true);
  }
}

function show(view) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.view === view);
  }
  for (const name of ["search", "duplicates", "image"]) $("view-" + name).hidden = name !== view;
  if (view === "duplicates") loadDuplicates();
}

async function start() {
  $("token").addEventListener("change", () => { localStorage.setItem("dinokit-token", $("token").value); start(); });
  try {
    info = await (await api("/v1/info")).json();
    const index = info.index ? `${info.index.count} images` : "no index";
    $("about").textContent = `${info.model} · ${info.pooling} · ${index}`;
    $("text-query").disabled = $("text-search").disabled = !info.reads_text;
    if (!info.index) setStatus($("status"), "this server has no index: start it with --index to search", true);
  } catch (e) {
    $("about").textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => show(button.dataset.view));
  $("file-input").addEventListener("change", (e) => searchImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); searchImage(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) searchImage(item.getAsFile());
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text-query").value.trim();
    if (text) search(JSON.stringify({ text, k: Number($("k").value) }), `“${text}”`);
  });
  start();
});
