// The vidsearch page: search, see moments as cards, play them, search by example.
// Every string from the server is shown with textContent or as an attribute value, never as HTML.
"use strict";

const TOKEN_KEY = "vidsearch-token";
const $ = (id) => document.getElementById(id);
const state = { hits: [], lastQuery: "", playing: null, stopWatch: 0, videos: new Set() };

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// -- the token: asked once, kept for this tab ------------------------------------------------------

function askToken(message) {
  $("token-message").textContent = message;
  $("token").value = "";
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  return new Promise((resolve) => {
    $("token-form").onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      resolve();
    };
  });
}

async function api(path, options) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = Object.assign({}, (options || {}).headers);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401) {
      const message = token
        ? "The server refused this token (401). Check it and enter it again."
        : "This server needs an access token.";
      setStatus(message, true);
      await askToken(message);
      continue;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const problem = body.error || {};
      throw new Error((problem.code || response.status) + ": " + (problem.message || response.statusText));
    }
    return body;
  }
}

// -- searching ---------------------------------------------------------------------------------------

function options(extra) {
  const tags = $("tag-filter").value.split(",").map((t) => t.trim()).filter(Boolean);
  const video = $("video-filter").value;
  return Object.assign({
    top_k: Math.max(1, parseInt($("top-k").value, 10) || 20),
    tags,
    video_ids: video ? [video] : [],
    group_by_video: $("group").checked,
    merge_moments: $("merge").checked,
  }, extra);
}

async function run(what, request) {
  setStatus(what + " …");
  performance.clearMarks();
  performance.clearMeasures();
  performance.mark("query-sent");
  try {
    const answer = await request();
    show(answer, what);
  } catch (error) {
    setStatus(String(error.message || error), true);
  }
}

function searchText(extra) {
  const query = $("query").value.trim();
  if (!query) return;
  state.lastQuery = query;
  const body = JSON.stringify(Object.assign({ query }, options(extra)));
  return run("“" + query + "”", () => api("/v1/search", { method: "POST", body,
    headers: { "Content-Type": "application/json" } }));
}

function searchSimilar(hit) {
  const body = JSON.stringify(Object.assign(options(), { clip_id: hit.clip_id }));
  return run("like " + hit.video_id + " " + span(hit), () => api("/v1/search-by-video", { method: "POST", body,
    headers: { "Content-Type": "application/json" } }));
}

function searchFile(file) {
  const form = new FormData();
  form.append("file", file);
  form.append("options", JSON.stringify(options()));
  return run("like the file " + file.name, () => api("/v1/search-by-video", { method: "POST", body: form }));
}

function momentsOf(hit) {
  if (!state.lastQuery) return searchSimilar(hit);
  $("query").value = state.lastQuery;
  const body = JSON.stringify(Object.assign(options(), {
    query: state.lastQuery, video_ids: [hit.video_id], group_by_video: false, merge_moments: true, top_k: 200,
  }));
  return run("all moments in " + hit.video_id, () => api("/v1/search", { method: "POST", body,
    headers: { "Content-Type": "application/json" } }));
}

// -- results -----------------------------------------------------------------------------------------

function span(hit) {
  return hit.start_s.toFixed(1) + "–" + hit.end_s.toFixed(1) + " s";
}

function card(hit) {
  const thumb = el("img", { src: hit.thumbnail_url, alt: "", width: 360, height: 90, decoding: "async" });
  const name = el("h3", { className: "name", textContent: hit.video_id, title: hit.uri });
  const meta = el("p", { className: "meta" },
    el("span", { className: "span", textContent: span(hit) }),
    el("span", { className: "score", textContent: "score " + hit.score.toFixed(3) }));
  if (hit.clip_ids.length > 1) meta.append(el("span", { textContent: hit.clip_ids.length + " clips" }));
  const tags = el("p", { className: "tags" });
  for (const tag of hit.tags) tags.append(el("span", { className: "tag", textContent: tag }));
  const moments = el("button", { type: "button", className: "moments", textContent: "All moments in this video" });
  const similar = el("button", { type: "button", className: "similar", textContent: "Find similar" });
  const node = el("article", { className: "card", tabIndex: 0 }, thumb, name, meta, tags,
    el("p", { className: "actions" }, moments, similar));
  node.setAttribute("aria-label", hit.video_id + ", " + span(hit));
  node.hit = hit;
  node.addEventListener("click", (event) => {
    if (event.target === moments) momentsOf(hit);
    else if (event.target === similar) searchSimilar(hit);
    else play(hit, node);
  });
  return node;
}

function show(answer, what) {
  const results = $("results");
  results.replaceChildren();
  const groups = answer.videos.length ? answer.videos : [{ video_id: "", hits: answer.hits }];
  let count = 0;
  for (const group of groups) {
    const list = el("div", { className: "cards" });
    for (const hit of group.hits) {
      list.append(card(hit));
      state.videos.add(hit.video_id);
      count += 1;
    }
    if (group.video_id) {
      results.append(el("section", { className: "group" },
        el("h2", { textContent: group.video_id + " — " + group.hits.length + " moments" }), list));
    } else {
      results.append(list);
    }
  }
  fillVideoFilter();
  const ms = answer.timings_ms ? " in " + answer.timings_ms.total.toFixed(0) + " ms" : "";
  setStatus(count ? count + " results for " + what + ms : "Nothing found for " + what);
  const images = Array.from(results.querySelectorAll("img"));
  Promise.all(images.map((img) => img.decode().catch(() => null))).then(() => {
    performance.mark("results-shown");
    performance.measure("results", "query-sent", "results-shown");
  });
  const first = results.querySelector(".card");
  if (first) first.focus({ preventScroll: true });
}

function fillVideoFilter() {
  const select = $("video-filter");
  const known = new Set(Array.from(select.options).map((o) => o.value));
  for (const video of Array.from(state.videos).sort()) {
    if (!known.has(video)) select.append(el("option", { value: video, textContent: video }));
  }
}

// -- the player: from the moment's start, paused at its end --------------------------------------------

function play(hit, node) {
  const video = $("video");
  $("player").hidden = false;
  $("now-playing").textContent = hit.video_id + " " + span(hit);
  document.querySelectorAll(".card.playing").forEach((c) => c.classList.remove("playing"));
  if (node) node.classList.add("playing");
  state.playing = hit;
  cancelAnimationFrame(state.stopWatch);
  const start = () => {
    video.currentTime = hit.start_s;
    video.play().catch((error) => setStatus("cannot play: " + error.message, true));
    watchEnd(hit);
  };
  if (video.getAttribute("src") !== hit.media_url) {
    video.src = hit.media_url;
    video.addEventListener("loadedmetadata", start, { once: true });
  } else {
    start();
  }
}

function watchEnd(hit) {
  const video = $("video");
  const check = () => {
    if (state.playing !== hit) return;
    if (video.currentTime >= hit.end_s) {
      video.pause();
      return;
    }
    state.stopWatch = requestAnimationFrame(check);
  };
  state.stopWatch = requestAnimationFrame(check);
}

function stop() {
  const video = $("video");
  video.pause();
  state.playing = null;
  $("player").hidden = true;
}

// -- keys, dropping a file -----------------------------------------------------------------------------

function moveFocus(step) {
  const cards = Array.from(document.querySelectorAll(".card"));
  if (!cards.length) return;
  const at = cards.indexOf(document.activeElement);
  const next = cards[Math.min(cards.length - 1, Math.max(0, at + step))];
  next.focus();
  next.scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (event.key === "Escape") { stop(); return; }
  if (typing) return;
  const focused = document.activeElement.hit;
  if (event.key === "/") { event.preventDefault(); $("query").focus(); }
  else if (event.key === "ArrowDown" || event.key === "j") { event.preventDefault(); moveFocus(1); }
  else if (event.key === "ArrowUp" || event.key === "k") { event.preventDefault(); moveFocus(-1); }
  else if (event.key === "Enter" && focused) play(focused, document.activeElement);
  else if (event.key === "m" && focused) momentsOf(focused);
  else if (event.key === "s" && focused) searchSimilar(focused);
});

document.addEventListener("dragover", (event) => { event.preventDefault(); $("drop").hidden = false; });
document.addEventListener("dragleave", (event) => { if (!event.relatedTarget) $("drop").hidden = true; });
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) searchFile(file);
});
$("file").addEventListener("change", () => { if ($("file").files[0]) searchFile($("file").files[0]); });
$("search").addEventListener("submit", (event) => { event.preventDefault(); searchText(); });
$("close-player").addEventListener("click", stop);

api("/v1/stats").then((stats) => {
  setStatus(stats.clips + " clips of " + stats.videos + " videos, " + stats.model + ". Type what you are looking for.");
}).catch((error) => setStatus(String(error.message || error), true));
