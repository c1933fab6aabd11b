// Vitrine search page: search-as-you-type (debounced fetch of an HTML fragment), filters
// that apply at once, and photo search by file picker, camera, drag and drop, or paste.
// No framework, no build step; without JavaScript the forms still work.
(function () {
  "use strict";
  const form = document.getElementById("search-form");
  const region = document.getElementById("results-region");
  const live = document.getElementById("live");
  const photoForm = document.getElementById("photo-form");
  const photoInput = document.getElementById("image");
  const overlay = document.getElementById("drop-overlay");
  const query = document.getElementById("q");
  if (!form || !region) return;

  const DEBOUNCE_MS = 250;
  let timer = null;
  let inflight = null;

  function currentParams() {
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (typeof value === "string" && value.trim() !== "") params.append(name, value.trim());
    }
    return params;
  }

  function showError(message) {
    region.innerHTML = "";
    const p = document.createElement("p");
    p.className = "message error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    region.appendChild(p);
    live.textContent = "Something went wrong.";
  }

  async function refresh(params) {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const url = "?" + params.toString();
    const fragment = new URLSearchParams(params);
    fragment.set("fragment", "1");
    document.body.classList.add("loading");
    try {
      const response = await fetch("?" + fragment.toString(), {
        headers: { "X-Requested-With": "fetch" }, signal: inflight.signal,
      });
      const html = await response.text();
      region.innerHTML = html;
      const state = region.querySelector("#results-state");
      live.textContent = state ? state.dataset.status : "";
      history.replaceState(null, "", params.toString() ? url : location.pathname);
    } catch (err) {
      if (err.name !== "AbortError") showError("Search is not reachable right now. Check your connection and try again.");
    } finally {
      document.body.classList.remove("loading");
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(currentParams()), delay);
  }

  // Typing: wait for a pause. Filters and sort: at once. Any change starts at page 1
  // because the page parameter is not a form field.
  query.addEventListener("input", () => schedule(DEBOUNCE_MS));
  form.addEventListener("change", (e) => { if (e.target !== query && e.target !== photoInput) schedule(0); });
  form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); refresh(currentParams()); });

  // Paging and "clear filters" links inside the results swap in place too.
  region.addEventListener("click", (e) => {
    const link = e.target.closest(".pagination a");
    if (!link || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    const params = new URL(link.href).searchParams;
    refresh(params).then(() => {
      form.scrollIntoView({ behavior: "smooth", block: "start" });
      const first = region.querySelector(".card a");
      if (first) first.focus({ preventScroll: true });
    });
  });

  // On a phone the filter panel starts closed unless a filter is in use.
  const panel = document.getElementById("filter-panel");
  if (panel && window.matchMedia("(max-width: 860px)").matches) {
    const active = ["category", "min_price", "max_price", "min_score"].some((n) => new URLSearchParams(location.search).get(n));
    panel.open = active;
  }

  // --- photo search ---
  if (!photoForm || !photoInput) return;
  const maxBytes = 10 * 1024 * 1024;

  function submitPhoto(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) { showError("That file is not an image. Choose a JPEG, PNG or WebP photo."); return; }
    if (file.size > maxBytes) { showError("That photo is larger than 10 MB. Choose a smaller one."); return; }
    if (photoInput.files[0] !== file) {
      const data = new DataTransfer();
      data.items.add(file);
      photoInput.files = data.files;
    }
    // The words and filters go along, so "photo + words" is one composed query.
    for (const old of photoForm.querySelectorAll("input[data-copied]")) old.remove();
    for (const [name, value] of currentParams()) {
      if (name === "img") continue;
      const hidden = document.createElement("input");
      hidden.type = "hidden"; hidden.name = name; hidden.value = value; hidden.dataset.copied = "1";
      photoForm.appendChild(hidden);
    }
    live.textContent = "Searching with your photo…";
    document.body.classList.add("loading");
    photoForm.submit();
  }

  photoInput.addEventListener("change", () => submitPhoto(photoInput.files[0]));

  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  document.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; overlay.hidden = false; } });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault(); depth = 0; overlay.hidden = true;
    submitPhoto(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...((e.clipboardData || {}).items || [])].find((i) => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); submitPhoto(item.getAsFile()); }
  });
})();
