// catdog web page: pick / drop / paste an image, ask every model, show the answers side by side.
// Runs under a strict Content-Security-Policy: no inline code, no eval, and data only ever reaches the page
// through textContent, never parsed as HTML. Every URL is relative, so the page works under a path prefix.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const main = $("main");
  const fileInput = $("file");
  const drop = $("drop");
  const preview = $("preview");
  const fileName = $("file-name");
  const statusLine = $("status");
  const alertLine = $("alert");
  const modelsBox = $("models");
  const versionLine = $("version");
  const cardTemplate = $("model-card");
  const rowTemplate = $("probability-row");

  const maxBytes = Number(main.dataset.maxUploadBytes) || 0;
  const cards = new Map(); // model name -> {model, el}
  let generation = 0; // bumps on every new image, so late answers for an old image are dropped
  let previewUrl = null;

  const MESSAGES = {
    401: "This service needs a valid API key.",
    403: "This API key may not classify images.",
    400: "That file is not an image the models can read.",
    404: "That model is not served here.",
    413: "That image is too large.",
    415: "That file type is not supported. Try a JPEG, PNG or WebP image.",
    422: "The request was not understood.",
    503: "The service is busy or the model is still loading. Please try again in a moment.",
    504: "The model took too long to answer. Please try again.",
  };

  function formatBytes(n) {
    if (n >= 1024 * 1024) return (n / (1024 * 1024)).toFixed(1) + " MiB";
    if (n >= 1024) return (n / 1024).toFixed(0) + " KiB";
    return n + " bytes";
  }

  function percent(p) {
    const v = Math.max(0, Math.min(1, Number(p) || 0)) * 100;
    return (v >= 99.95 || v < 0.05 ? v.toFixed(0) : v.toFixed(1)) + "%";
  }

  function formatMs(ms) {
    return ms < 10 ? ms.toFixed(1) + " ms" : Math.round(ms) + " ms";
  }

  function setText(root, selector, text) {
    const el = root.querySelector(selector);
    el.textContent = text == null ? "" : String(text);
    return el;
  }

  function showAlert(text) {
    alertLine.textContent = text || "";
    alertLine.hidden = !text;
  }

  // ---- API key: asked for when the service answers 401, kept for this tab only (sessionStorage) -----------

  const KEY_STORE = "catdog.apiKey";
  const keyForm = $("key-form");
  const keyInput = $("api-key");
  const keyError = $("key-error");

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch (err) {
      return ""; // storage disabled: the key is asked for again on each page load
    }
  }

  let apiKey = storedKey();

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  function askForKey(message) {
    if (message !== undefined) {
      // undefined: keep what is shown (the page's calls run side by side and the first refusal says why)
      keyError.textContent = message;
      keyError.hidden = !message;
    }
    keyForm.hidden = false;
    keyInput.focus();
  }

  class KeyNeeded extends Error {}

  function refusedKey(response) {
    if (response.status !== 401 && response.status !== 403) return false;
    if (response.status === 401) {
      const hadKey = Boolean(apiKey);
      apiKey = "";
      try {
        sessionStorage.removeItem(KEY_STORE);
      } catch (err) {
        // nothing stored
      }
      askForKey(hadKey ? "That API key was not accepted. Check it and try again." : undefined);
    } else {
      askForKey("This API key may not use this page (it lacks the infer scope).");
    }
    return true;
  }

  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = keyInput.value.trim();
    if (!value) return;
    apiKey = value;
    try {
      sessionStorage.setItem(KEY_STORE, value);
    } catch (err) {
      // kept in memory for this page only
    }
    keyInput.value = "";
    keyForm.hidden = true;
    keyError.hidden = true;
    loadModels();
    loadVersion();
  });

  // ---- models -------------------------------------------------------------------------------------------

  async function getJson(url) {
    const response = await fetch(url, { headers: headers(), cache: "no-store" });
    if (refusedKey(response)) throw new KeyNeeded(url + " answered " + response.status);
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  function statusText(status) {
    return { ready: "ready", loading: "loading…", failed: "failed to load" }[status] || String(status || "unknown");
  }

  function renderCard(model) {
    let entry = cards.get(model.name);
    if (!entry) {
      const el = cardTemplate.content.firstElementChild.cloneNode(true);
      el.dataset.model = model.name;
      el.setAttribute("aria-labelledby", "model-" + cards.size + "-name");
      el.querySelector(".model-name").id = "model-" + cards.size + "-name";
      modelsBox.appendChild(el);
      entry = { model, el };
      cards.set(model.name, entry);
    }
    entry.model = model;
    const el = entry.el;
    setText(el, ".model-name", model.name);
    const badge = setText(el, ".model-status", statusText(model.status));
    badge.className = "badge model-status status-" + String(model.status || "unknown").replace(/[^a-z]/g, "");
    setText(el, ".model-description", model.description || "");
    setText(el, ".model-version", model.version || "?");
    setText(el, ".model-provider", (model.provider || "?").replace(/ExecutionProvider$/, ""));
    el.querySelector(".model-provider").title = model.provider || "";
    const input = model.input || {};
    setText(el, ".model-input", input.width && input.height ? input.width + " × " + input.height + " px" : "?");
    // Figures on photos the model never saw (the card's `heldout`), and where it is weak.
    const held = model.heldout;
    el.querySelector(".model-heldout-row").hidden = !held;
    if (held) {
      const parts = Object.entries(held.per_class || {}).map(([k, v]) => k + " " + v.correct + "/" + v.total);
      setText(el, ".model-heldout", held.correct + "/" + held.total + " right (" + parts.join(", ") + ")"
        + (typeof held.ece === "number" ? ", calibration error " + held.ece.toFixed(2) : ""));
      el.querySelector(".model-heldout").title = held.method || "";
    }
    setText(el, ".model-caveat", model.caveat || "");
    return entry;
  }

  let pollTimer = null;

  async function loadModels() {
    try {
      const data = await getJson("v1/models");
      const models = Array.isArray(data.models) ? data.models : [];
      const loading = $("models-loading");
      if (loading) loading.remove();
      if (models.length === 0 && cards.size === 0) {
        const p = document.createElement("p");
        p.className = "muted";
        p.id = "models-loading";
        p.textContent = "No models are being served.";
        modelsBox.appendChild(p);
      }
      models.forEach(renderCard);
      clearTimeout(pollTimer);
      if (models.some((m) => m.status === "loading")) pollTimer = setTimeout(loadModels, 2000);
    } catch (err) {
      const loading = $("models-loading");
      clearTimeout(pollTimer);
      if (err instanceof KeyNeeded) {
        if (loading) loading.textContent = "Enter an API key above to see the models.";
        return; // asked again once a key is given
      }
      if (loading) loading.textContent = "Could not load the list of models. Is the service running?";
      pollTimer = setTimeout(loadModels, 5000);
    }
  }

  async function loadVersion() {
    try {
      const v = await getJson("version");
      const parts = ["catdog " + (v.version || "?")];
      if (v.git_revision) parts.push("revision " + String(v.git_revision).slice(0, 12));
      if (v.onnxruntime) parts.push("ONNX Runtime " + v.onnxruntime);
      versionLine.textContent = parts.join(" · ");
    } catch (err) {
      versionLine.textContent = "";
    }
  }

  // ---- predictions --------------------------------------------------------------------------------------

  function resetCard(entry) {
    const el = entry.el;
    el.classList.remove("has-error", "has-answer");
    el.classList.add("busy");
    el.setAttribute("aria-busy", "true");
    el.querySelector(".answer").hidden = true;
    const error = el.querySelector(".error");
    error.hidden = false;
    error.classList.add("pending");
    error.textContent = "Asking " + entry.model.name + "…";
  }

  function showAnswer(entry, result, ms) {
    const el = entry.el;
    el.classList.remove("busy", "has-error");
    el.classList.add("has-answer");
    el.removeAttribute("aria-busy");
    el.querySelector(".error").hidden = true;
    const answer = el.querySelector(".answer");
    setText(answer, ".label", result.label);
    setText(answer, ".confidence", percent(result.confidence));
    const list = answer.querySelector(".probabilities");
    list.replaceChildren();
    const probabilities = result.probabilities || {};
    const labels = (entry.model.labels && entry.model.labels.length ? entry.model.labels : Object.keys(probabilities));
    for (const label of labels) {
      if (!(label in probabilities)) continue;
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      const p = Number(probabilities[label]) || 0;
      setText(row, ".prob-label", label);
      setText(row, ".prob-value", percent(p));
      // CSSOM, not a style attribute: allowed by style-src 'self'.
      row.querySelector(".fill").style.width = (Math.max(0, Math.min(1, p)) * 100).toFixed(1) + "%";
      if (label === result.label) row.classList.add("chosen");
      list.appendChild(row);
    }
    const version = result.model_version ? "version " + result.model_version + " · " : "";
    setText(answer, ".timing", version + "answered in " + formatMs(ms));
    answer.hidden = false;
  }

  function showError(entry, message, detail) {
    const el = entry.el;
    el.classList.remove("busy", "has-answer");
    el.classList.add("has-error");
    el.removeAttribute("aria-busy");
    el.querySelector(".answer").hidden = true;
    const error = el.querySelector(".error");
    error.classList.remove("pending");
    const title = document.createElement("span");
    title.className = "error-title";
    title.textContent = message;
    error.replaceChildren(title);
    if (detail) {
      const more = document.createElement("span");
      more.className = "error-detail";
      more.textContent = detail;
      error.appendChild(more);
    }
    error.hidden = false;
  }

  async function errorMessage(response) {
    let detail = "";
    let requestId = "";
    try {
      const body = await response.json();
      if (body && body.error) {
        detail = body.error.message || "";
        requestId = body.error.request_id || "";
      }
    } catch (err) {
      // not JSON (a proxy's error page, say): the status code says enough
    }
    let text = MESSAGES[response.status] || "The service answered " + response.status + ".";
    if (response.status === 503 || response.status === 429) {
      const retry = Number(response.headers.get("Retry-After"));
      if (retry > 0) text = text.replace("in a moment", "in " + retry + " s");
    }
    const extra = [];
    if (detail) extra.push("The service said: " + detail + (/[.!?]$/.test(detail) ? "" : "."));
    if (requestId) extra.push("Request id " + requestId + ".");
    return { text, detail: extra.join(" "), status: response.status };
  }

  async function predict(entry, file, gen) {
    const form = new FormData();
    form.append("file", file, file.name || "image");
    const started = performance.now();
    try {
      const response = await fetch("v1/models/" + encodeURIComponent(entry.model.name) + "/predict", {
        method: "POST",
        body: form,
        headers: headers(),
      });
      const ms = performance.now() - started;
      if (gen !== generation) return null;
      refusedKey(response);
      if (!response.ok) {
        const err = await errorMessage(response);
        if (gen !== generation) return null;
        showError(entry, err.text, err.detail);
        return { ok: false, model: entry.model.name, message: err.text, status: err.status };
      }
      const result = await response.json();
      if (gen !== generation) return null;
      showAnswer(entry, result, ms);
      return { ok: true, model: entry.model.name, label: result.label, confidence: result.confidence };
    } catch (err) {
      if (gen !== generation) return null;
      const text = "Could not reach the service. Check the connection and try again.";
      showError(entry, text);
      return { ok: false, model: entry.model.name, message: text, status: 0 };
    }
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.hidden = true;
    preview.removeAttribute("src");
    if (file.type && file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      preview.alt = "Preview of " + (file.name || "the pasted image");
      preview.src = previewUrl;
      preview.hidden = false;
    }
    fileName.textContent = (file.name || "pasted image") + " · " + formatBytes(file.size);
    drop.classList.add("has-file");
  }

  async function classify(file) {
    if (!file) return;
    const gen = ++generation;
    showPreview(file);
    showAlert("");
    const entries = Array.from(cards.values());
    if (entries.length === 0) {
      showAlert("No models are available yet; please wait a moment and try again.");
      return;
    }
    if (maxBytes && file.size > maxBytes) {
      const text = MESSAGES[413] + " The limit is " + formatBytes(maxBytes) + "; this file is " + formatBytes(file.size) + ".";
      entries.forEach((entry) => showError(entry, text));
      statusLine.textContent = "";
      showAlert(text);
      return;
    }
    statusLine.textContent = "Asking " + entries.length + (entries.length === 1 ? " model…" : " models…");
    const pending = entries.map((entry) => {
      if (entry.model.status === "failed") {
        showError(entry, "This model failed to load, so it cannot answer.");
        return Promise.resolve({ ok: false, model: entry.model.name, message: "failed to load", status: -1 });
      }
      resetCard(entry);
      return predict(entry, file, gen);
    });
    const results = await Promise.all(pending);
    if (gen !== generation) return;
    const answers = results.filter((r) => r && r.ok);
    const errors = results.filter((r) => r && !r.ok && r.status !== -1);
    statusLine.textContent = answers.length
      ? answers.map((r) => r.model + ": " + r.label + ", " + percent(r.confidence)).join("; ") + "."
      : "";
    if (errors.length) {
      const distinct = Array.from(new Set(errors.map((r) => r.message)));
      showAlert(distinct.length === 1 ? distinct[0] : "Some models could not answer; see each model below.");
    }
  }

  // ---- input: pick, drop, paste ---------------------------------------------------------------------------

  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) classify(file);
    // Picking the same file again must fire "change" again.
    fileInput.value = "";
  });

  $("upload").addEventListener("submit", (event) => event.preventDefault());

  ["dragenter", "dragover"].forEach((type) =>
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    }),
  );
  ["dragleave", "dragend"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("dragging")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
    if (file) classify(file);
  });
  // A file dropped next to the target must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  document.addEventListener("paste", (event) => {
    const items = (event.clipboardData && event.clipboardData.items) || [];
    for (const item of items) {
      if (item.kind === "file") {
        const file = item.getAsFile();
        if (file) {
          event.preventDefault();
          classify(file);
          return;
        }
      }
    }
  });

  preview.addEventListener("error", () => {
    preview.hidden = true;
  });

  loadModels();
  loadVersion();
})();
