// Job view: provider, prompt, status, progress, result images and one button per action.
// Python owns the state (traits, written on the engine thread); this view only draws it and
// sends messages: {type: "act", label}, {type: "full", index}, {type: "cancel"}, {type: "images"}.
// It never waits on a reply: a clicked button is disabled until the state says what happened.
// The result's thumbnails are not synced state (a notebook saved with widget state would keep
// them): the view asks for them on render, and Python sends them when `images_rev` changes.
// The static picture displayed beside the view is hidden only once the kernel has answered or
// sent a change, so a view restored from saved widget state with no kernel leaves it in sight;
// if no kernel has answered after ORPHAN_MS, the card itself makes way for that picture (its
// buttons would do nothing) until one does.
// The messages are listed in jupyter_imagine/widgets/_protocol.py.

import { blobUrl, findFallback, h, hideFallback } from "./_dom.js";

const STATUS = { queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed", cancelled: "Cancelled" };
const ERRORS = {
  ModeratedPrompt: "Prompt refused", QuotaExceeded: "Out of credits", JobTimeout: "Timed out",
  AuthenticationError: "Key rejected", RateLimited: "Rate limited", ServiceUnavailable: "Service unavailable",
  BudgetExceeded: "Over budget",
};
/** How long a view waits for a kernel before it gives way to the static picture (ms). */
export const ORPHAN_MS = 3000;
const BUSY = new Set(["starting", "queued", "running", "drawing"]);
/** Words shown after the labels that are only an emoji, so no button depends on an emoji font. */
const SPELLED = { "🔄": "Reroll", "⬅️": "Pan left", "➡️": "Pan right", "⬆️": "Pan up", "⬇️": "Pan down" };

/** A button's text (and accessible name): the label, with words after an emoji-only one ("🔄 Reroll"). */
export const buttonText = (label) => (SPELLED[label] ? `${label} ${SPELLED[label]}` : label);

/** The kind badge: "U2 · upscale", but "Vary (Region)" for a vary_region (the kind once). */
export function kindText(action, kind) {
  if (!action) return kind;
  const said = (SPELLED[action] || action).toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
  const shown = buttonText(action);
  return said && (said === kind || said.startsWith(`${kind}_`)) ? shown : `${shown} · ${kind}`;
}

/** "4.2 s", "12 s", "3 min 05 s". */
export function formatElapsed(seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  return `${m} min ${String(s).padStart(2, "0")} s`;
}

/** The status line: "Queued · #3 in queue", "Running 40%", "Done", "Failed" … */
export function statusText(state) {
  const { status, progress, queue_position: queue } = state;
  let text = STATUS[status] || status;
  if (status === "running") text += ` ${Math.round(progress || 0)}%`;
  if ((status === "queued" || status === "running") && queue != null) text += ` · #${queue} in queue`;
  return text;
}

/** The one readable error line, in the provider's own words. */
export function errorText(state) {
  if (state.status === "failed") {
    const kind = ERRORS[state.error_type] || "Failed";
    return `${kind}: ${state.error || "the provider gave no reason"}`;
  }
  if (state.status === "cancelled") return "Cancelled";
  return state.error || "";
}

function render({ model, el }) {
  const get = (k) => model.get(k);
  const state = () => ({
    status: get("status"), progress: get("progress"), queue_position: get("queue_position"),
    error: get("error"), error_type: get("error_type"),
  });
  const urls = [];
  const full = new Map();
  let images = [];
  let previewUrl = null, timer = null, received = performance.now(), fallback = null;
  const pending = new Set();

  const chips = h("div", { class: "ji-chips" });
  const status = h("span", { class: "ji-status", role: "status", "aria-live": "polite" });
  const cancel = h("button", { class: "ji-cancel", type: "button", onclick: () => model.send({ type: "cancel" }) }, "Cancel");
  const prompt = h("div", { class: "ji-prompt" });
  const bar = h("div");
  const progress = h("div", { class: "ji-progress", role: "progressbar", "aria-label": "Progress", "aria-valuemin": "0", "aria-valuemax": "100" }, bar);
  const preview = h("img", { class: "ji-preview ji-hidden", alt: "" });
  const media = h("div", { class: "ji-media" });
  const actions = h("div", { class: "ji-actions", role: "group", "aria-label": "Actions" });
  const notice = h("div", { class: "ji-line ji-hidden", role: "status" });
  const error = h("div", { class: "ji-line ji-error ji-hidden", role: "alert" });
  const head = h("div", { class: "ji-head" }, chips, h("div", { class: "ji-state" }, status, cancel));
  const card = h("div", { class: "ji ji-card ji-job" }, head, prompt, progress, preview, media, actions, error, notice);
  el.append(card);

  function heading() {
    // replaceChildren would write a null as the text "null": drop the absent chips first
    chips.replaceChildren(...[
      h("span", { class: "ji-chip", title: `provider: ${get("provider")}` }, get("provider_label") || get("provider")),
      get("sandbox") ? h("span", { class: "ji-chip ji-sandbox", title: "No API key: this job ran in the built-in sandbox" }, "SANDBOX") : null,
      h("span", { class: "ji-chip ji-kind", title: `kind: ${get("kind")}` }, kindText(get("action"), get("kind"))),
      h("code", { class: "ji-id", title: "job id: jupyter_imagine.job(id) re-attaches to it" }, get("job_id").slice(0, 8)),
      get("cost") ? h("span", { class: "ji-cost", title: get("cost").startsWith("≈") ? "expected cost (published price)" : "what this job cost" }, get("cost")) : null,
    ].filter(Boolean));
    prompt.textContent = get("prompt");
    prompt.title = get("prompt");
    card.setAttribute("aria-label", `${get("provider_label") || get("provider")} ${get("kind")}: ${get("prompt")}`);
  }

  function tick() {
    const s = get("status");
    const live = s === "queued" || s === "running";
    const elapsed = get("elapsed") + (live ? (performance.now() - received) / 1000 : 0);
    status.textContent = `${statusText(state())} · ${formatElapsed(elapsed)}`;
    status.dataset.status = s;
  }

  function progressUpdate() {
    const s = get("status");
    const live = s === "queued" || s === "running";
    progress.classList.toggle("ji-hidden", !live);
    cancel.classList.toggle("ji-hidden", !live);
    const pct = Math.max(0, Math.min(100, get("progress") || 0));
    progress.classList.toggle("ji-indeterminate", s === "queued" || (s === "running" && pct === 0));
    bar.style.width = `${pct}%`;
    progress.setAttribute("aria-valuenow", String(Math.round(pct)));
    if (live && !timer) timer = setInterval(tick, 1000);
    if (!live && timer) { clearInterval(timer); timer = null; }
    tick();
    const line = s === "failed" || s === "cancelled" ? errorText(state()) : get("error");
    error.textContent = line;
    error.classList.toggle("ji-hidden", !line);
  }

  function previewUpdate() {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = get("status") === "running" ? blobUrl(get("preview")) : null;
    preview.classList.toggle("ji-hidden", !previewUrl);
    preview.alt = previewUrl ? `Preview of: ${get("prompt")}` : "";
    if (previewUrl) preview.src = previewUrl; else preview.removeAttribute("src");
  }

  function mediaUpdate() {
    urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
    const sizes = get("sizes") || [];
    const n = images.length;
    media.className = `ji-media ji-${get("arrangement") || "single"}`;
    media.replaceChildren(...images.map((dv, i) => {
      const url = blobUrl(dv);
      urls.push(url);
      const which = n > 1 ? ` (image ${i + 1} of ${n})` : "";
      const [w, hgt] = sizes[i] || [];
      const img = h("img", { src: url, alt: `${get("prompt")}${which}`, loading: "lazy", width: w, height: hgt });
      return h("button", { class: "ji-cell", type: "button", title: "Open at full size", onclick: () => open(i) }, img);
    }));
  }

  function actionsUpdate() {
    const labels = get("actions") || [];
    const done = get("status") === "succeeded";
    actions.replaceChildren(...labels.flatMap((label) => {
      const b = h("button", { type: "button", "data-label": label, onclick: () => act(label, b) }, buttonText(label));
      return label === "V1" ? [h("span", { class: "ji-break" }), b] : [b];
    }));
    actions.classList.toggle("ji-hidden", !labels.length || !done);
    buttonStates();
  }

  function buttonStates() {
    const states = get("action_state") || {};
    const done = get("status") === "succeeded";
    for (const b of actions.querySelectorAll("button")) {
      const st = states[b.dataset.label];
      if (st) b.dataset.state = st; else delete b.dataset.state;
      b.disabled = !done || pending.has(b.dataset.label) || BUSY.has(st);
    }
  }

  function act(label, button) {
    if (button.disabled) return;
    pending.add(label);
    button.disabled = true;
    model.send({ type: "act", label });
  }

  function noticeUpdate() {
    const text = get("notice");
    notice.textContent = text;
    notice.classList.toggle("ji-hidden", !text);
  }

  // Full-size images travel only on request, as a message buffer.
  let box = null;
  function open(i) {
    close();
    const n = images.length;
    const img = h("img", { alt: `${get("prompt")}${n > 1 ? ` (image ${i + 1} of ${n})` : ""}, full size`, src: full.get(i) || urls[i] });
    const link = h("a", { download: `${get("job_id").slice(0, 8)}-${i + 1}.png`, href: full.get(i) || "#" }, "Download");
    const shut = h("button", { type: "button", onclick: close }, "Close");
    const note = h("span", {}, full.has(i) ? "" : "loading full size…");
    box = h("div", { class: "ji ji-lightbox", role: "dialog", "aria-modal": "true", "aria-label": `Full-size image ${i + 1}`, tabindex: "-1", "data-lm-suppress-shortcuts": "true",
      onclick: (e) => { if (e.target === box) close(); },
      onkeydown: (e) => { if (e.key === "Escape") { e.stopPropagation(); close(); } } },
    img, h("div", { class: "ji-bar" }, note, link, shut));
    box.dataset.index = String(i);
    document.body.append(box);
    shut.focus();
    if (!full.has(i)) model.send({ type: "full", index: i });
  }
  function close() { if (box) { box.remove(); box = null; } }

  // Sent on render even when there is no result yet: the reply tells the view the kernel is there.
  function requestImages() {
    model.send({ type: "images" });
  }

  // No kernel answered (a notebook reopened with a new kernel rebuilds its views from the saved
  // widget state, and no kernel knows them): the card shows what the picture shows, with buttons
  // that do nothing, so it steps aside for the picture. Any answer or change brings it back.
  let answered = false;
  const orphan = setTimeout(() => {
    if (!answered && findFallback(el, get("fallback_key"))) card.classList.add("ji-hidden");
  }, ORPHAN_MS);

  // The kernel is there (it answered or changed something): hide the static picture.
  let hideTries = 0;
  function live() {
    answered = true;
    card.classList.remove("ji-hidden");
    fallback = fallback || hideFallback(el, get("fallback_key"));
    if (!fallback && hideTries < 5) setTimeout(live, 100 * 2 ** hideTries++); // not attached yet
  }

  function onMessage(msg, buffers) {
    if (msg && msg.type === "images") {
      live();
      if (msg.rev === get("images_rev")) { images = [...(buffers || [])]; mediaUpdate(); }
      return;
    }
    if (msg && msg.type === "full" && buffers && buffers.length) {
      const url = blobUrl(buffers[0]);
      if (full.has(msg.index)) URL.revokeObjectURL(full.get(msg.index));
      full.set(msg.index, url);
      if (box && box.dataset.index === String(msg.index)) {
        box.querySelector("img").src = url;
        box.querySelector("a").href = url;
        box.querySelector("span").textContent = "";
      }
    }
  }

  const onStatus = () => {
    received = performance.now();
    pending.clear();
    progressUpdate(); previewUpdate(); actionsUpdate();
    live();
  };
  const on = (name, fn) => model.on(`change:${name}`, fn);
  on("status", onStatus);
  on("elapsed", () => { received = performance.now(); tick(); live(); });
  on("progress", () => { progressUpdate(); live(); });
  on("queue_position", progressUpdate);
  on("error", progressUpdate);
  on("preview", previewUpdate);
  on("actions", actionsUpdate);
  on("action_state", () => { pending.clear(); buttonStates(); });
  on("notice", () => { pending.clear(); buttonStates(); noticeUpdate(); });
  for (const k of ["prompt", "kind", "action", "provider", "sandbox", "cost"]) on(k, heading);
  model.on("msg:custom", onMessage);
  on("fallback_key", live);

  heading(); progressUpdate(); previewUpdate(); mediaUpdate(); actionsUpdate(); noticeUpdate();
  requestImages();

  return () => {
    clearTimeout(orphan);
    if (timer) clearInterval(timer);
    close();
    if (fallback) fallback.classList.remove("ji-hidden");
    urls.forEach((u) => URL.revokeObjectURL(u));
    full.forEach((u) => URL.revokeObjectURL(u));
    if (previewUrl) URL.revokeObjectURL(previewUrl);
  };
}

export default { render };
