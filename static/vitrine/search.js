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

  // Search analytics: a search typed on top of one still being typed replaces it in the log
  // ("snea" -> "sneakers"), so the admin's top queries are what shoppers meant to search.
  let typedQueryId = null;

  // paging: another page of the same search, whose clicks count for it (query_id, not in the URL).
  async function refresh(params, typing, paging) {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const url = "?" + params.toString();
    const fragment = new URLSearchParams(params);
    fragment.set("fragment", "1");
    if (typing && typedQueryId) fragment.set("replaces", typedQueryId);
    const shown = region.querySelector("#results-state");
    if (paging && shown && shown.dataset.queryId) fragment.set("query_id", shown.dataset.queryId);
    document.body.classList.add("loading");
    try {
      const response = await fetch("?" + fragment.toString(), {
        headers: { "X-Requested-With": "fetch" }, signal: inflight.signal,
      });
      const html = await response.text();
      region.innerHTML = html;
      const state = region.querySelector("#results-state");
      live.textContent = state ? state.dataset.status : "";
      typedQueryId = typing && state ? state.dataset.queryId || null : null;
      swapFacets();
      history.replaceState(null, "", params.toString() ? url : location.pathname);
    } catch (err) {
      if (err.name !== "AbortError") showError("Search is not reachable right now. Check your connection and try again.");
    } finally {
      document.body.classList.remove("loading");
    }
  }

  // The facet counts (categories, price histogram) live in the filter panel, outside the
  // swapped region: the fragment carries fresh ones in <template id="facets-next">. Focus
  // stays on the same control when it is replaced.
  function swapFacets() {
    const next = region.querySelector("template#facets-next");
    if (!next) return;
    const active = document.activeElement;
    const focusKey = active && active.closest && active.closest("[data-facet]") ? [active.name, active.value, active.dataset.min] : null;
    for (const fresh of next.content.querySelectorAll("[data-facet]")) {
      const old = document.getElementById(fresh.id);
      if (old) old.replaceWith(document.importNode(fresh, true));
    }
    if (focusKey) {
      const same = [...document.querySelectorAll("[data-facet] input, [data-facet] a")].find(
        (el) => el.name === focusKey[0] && el.value === focusKey[1] && el.dataset.min === focusKey[2]);
      if (same) same.focus({ preventScroll: true });
    }
  }

  function schedule(delay, typing) {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(currentParams(), typing), delay);
  }

  // Typing: wait for a pause. Filters and sort: at once. Any change starts at page 1
  // because the page parameter is not a form field.
  query.addEventListener("input", () => {
    // "Search instead for what I typed" holds for that query only
    const keep = document.getElementById("keep-uncorrected");
    if (keep) keep.remove();
    schedule(DEBOUNCE_MS, true);
  });
  form.addEventListener("change", (e) => { if (e.target !== query && e.target !== photoInput) schedule(0); });

  // Photo + words: the slider weighs the words against the photo; it counts only with words.
  const textWeight = document.getElementById("text_weight");
  if (textWeight) {
    const shown = document.getElementById("text-weight-value");
    textWeight.addEventListener("input", () => {
      const words = Math.round(100 * Number(textWeight.value));
      shown.textContent = words + "%";
      textWeight.setAttribute("aria-valuetext", `words ${words}%, photo ${100 - words}%`);
    });
    query.addEventListener("input", () => { textWeight.disabled = query.value.trim() === ""; });
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); refresh(currentParams()); });

  // A price bar sets (or, chosen again, clears) the price range.
  form.addEventListener("click", (e) => {
    const bar = e.target.closest(".histogram a.bar");
    if (!bar || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    const chosen = bar.classList.contains("selected");
    document.getElementById("min_price").value = chosen ? "" : bar.dataset.min;
    document.getElementById("max_price").value = chosen ? "" : bar.dataset.max;
    schedule(0);
  });

  // Paging, "clear filters" and "search instead for" links inside the results swap in place too.
  region.addEventListener("click", (e) => {
    const link = e.target.closest(".pagination a, .correction a");
    if (!link || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    const params = new URL(link.href).searchParams;
    refresh(params, false, !!link.closest(".pagination")).then(() => {
      form.scrollIntoView({ behavior: "smooth", block: "start" });
      const first = region.querySelector(".card a");
      if (first) first.focus({ preventScroll: true });
    });
  });

  // A result opened (click, middle click, Enter): tell the search log which one, by beacon,
  // which the browser sends even as it leaves the page.
  function reportClick(e) {
    const link = e.target.closest(".card-link");
    const card = link && link.closest(".card[data-rank]");
    const state = region.querySelector("#results-state");
    if (!card || !state || !state.dataset.queryId || !navigator.sendBeacon) return;
    navigator.sendBeacon("/api/click", new URLSearchParams({
      query_id: state.dataset.queryId, sku: card.dataset.sku, rank: card.dataset.rank,
    }));
  }
  region.addEventListener("click", reportClick);
  region.addEventListener("auxclick", (e) => { if (e.button === 1) reportClick(e); });

  setupSuggestions();

  // On a phone the filter panel starts closed unless a filter is in use.
  const panel = document.getElementById("filter-panel");
  if (panel && window.matchMedia("(max-width: 860px)").matches) {
    const active = ["category", "min_price", "max_price", "min_score"].some((n) => new URLSearchParams(location.search).get(n));
    panel.open = active;
  }

  // --- autocomplete: a listbox under the search box (ARIA combobox pattern) ---
  function setupSuggestions() {
    const list = document.getElementById("suggestions");
    const url = query.dataset.suggestUrl;
    if (!list || !url) return;
    let items = [];
    let current = -1;
    let pending = null;
    let suggestTimer = null;

    function close() {
      list.hidden = true;
      list.innerHTML = "";
      items = [];
      current = -1;
      query.setAttribute("aria-expanded", "false");
      query.removeAttribute("aria-activedescendant");
    }

    function highlight(index) {
      current = index;
      items.forEach((li, i) => li.setAttribute("aria-selected", i === index ? "true" : "false"));
      if (index >= 0) query.setAttribute("aria-activedescendant", items[index].id);
      else query.removeAttribute("aria-activedescendant");
    }

    function choose(li) {
      const kind = li.dataset.kind;
      close();
      if (kind === "product") { location.href = li.dataset.url; return; }
      if (kind === "category") {
        query.value = "";
        const radio = [...form.querySelectorAll('input[name="category"]')].find((r) => r.value === li.dataset.text);
        if (radio) { radio.disabled = false; radio.checked = true; }
      } else {
        query.value = li.dataset.text;
      }
      clearTimeout(timer);
      refresh(currentParams());
    }

    function show(suggestions) {
      list.innerHTML = "";
      items = suggestions.map((s, i) => {
        const li = document.createElement("li");
        li.id = "suggestion-" + i;
        li.setAttribute("role", "option");
        li.dataset.kind = s.kind; li.dataset.text = s.text; li.dataset.url = s.url;
        const label = document.createElement("span");
        label.textContent = s.text;
        const kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = { category: "category", product: "product", query: "popular search" }[s.kind] || "search";
        li.append(label, kind);
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(li); });
        list.appendChild(li);
        return li;
      });
      current = -1;
      list.hidden = items.length === 0;
      query.setAttribute("aria-expanded", items.length ? "true" : "false");
    }

    async function load() {
      const text = query.value.trim();
      if (text.length < 2) { close(); return; }
      if (pending) pending.abort();
      pending = new AbortController();
      try {
        const response = await fetch(url + "?" + new URLSearchParams({ q: text, k: "8" }), { signal: pending.signal });
        if (!response.ok) { close(); return; }
        const body = await response.json();
        if (query.value.trim() === text && document.activeElement === query) show(body.suggestions);
      } catch (err) {
        if (err.name !== "AbortError") close();
      }
    }

    query.addEventListener("input", () => { clearTimeout(suggestTimer); suggestTimer = setTimeout(load, 120); });
    query.addEventListener("keydown", (e) => {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight((current + 1) % items.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(current <= 0 ? items.length - 1 : current - 1); }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
      else if (e.key === "Enter" && current >= 0) { e.preventDefault(); choose(items[current]); }
    });
    query.addEventListener("blur", () => setTimeout(close, 100));
    form.addEventListener("submit", close);
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
