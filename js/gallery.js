// Gallery over history rows: filter by provider, status, who made it (when the rows have several
// people: a team store) and prompt text; thumbnails load lazily
// ({type: "thumbs", ids} → reply with one buffer per id); a click opens the job's view beneath
// ({type: "open", id}). The messages are listed in jupyter_imagine/widgets/_protocol.py.

import { blobUrl, h, hideFallback } from "./_dom.js";

const PAGE = 48;

/** Rows matching the filters: provider, status and user exactly ("" = any), text in the prompt. */
export function filterRows(rows, { provider = "", status = "", user = "", text = "" } = {}) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  return rows.filter((r) =>
    (!provider || r.provider === provider) &&
    (!status || r.status === status) &&
    (!user || r.user === user) &&
    words.every((w) => (r.prompt || "").toLowerCase().includes(w) || (r.id || "").startsWith(w)));
}

const options = (label, values) =>
  [h("option", { value: "" }, label), ...values.map((v) => h("option", { value: v }, v))];

function render({ model, el }) {
  const thumbs = new Map(); // id → blob URL, or "" while requested
  let shown = PAGE;
  const search = h("input", { type: "search", placeholder: "Search prompts", "aria-label": "Search prompts" });
  const provider = h("select", { "aria-label": "Provider" });
  const status = h("select", { "aria-label": "Status" });
  const user = h("select", { "aria-label": "Made by", class: "ji-hidden" });
  const count = h("span", { class: "ji-count", role: "status" });
  const tiles = h("div", { class: "ji-tiles", role: "list" });
  const more = h("button", { type: "button", class: "ji-more", onclick: () => { shown += PAGE; draw(); } }, "Show more");
  const root = h("div", { class: "ji ji-card ji-gallery", role: "region", "aria-label": "Job gallery" },
    h("div", { class: "ji-filters" }, search, provider, status, user, count), tiles, more);
  el.append(root);

  const observer = typeof IntersectionObserver === "function"
    ? new IntersectionObserver((entries) => {
      const ids = entries.filter((e) => e.isIntersecting).map((e) => e.target.dataset.id);
      entries.forEach((e) => e.isIntersecting && observer.unobserve(e.target));
      request(ids);
    }, { rootMargin: "200px" })
    : null;

  function request(ids) {
    const wanted = ids.filter((id) => !thumbs.has(id));
    if (!wanted.length) return;
    wanted.forEach((id) => thumbs.set(id, ""));
    model.send({ type: "thumbs", ids: wanted });
  }

  function fillOptions() {
    const rows = model.get("rows") || [];
    const keep = [provider.value, status.value, user.value];
    const users = [...new Set(rows.map((r) => r.user).filter(Boolean))].sort();
    provider.replaceChildren(...options("All providers", [...new Set(rows.map((r) => r.provider))].sort()));
    status.replaceChildren(...options("Any status", [...new Set(rows.map((r) => r.status))].sort()));
    user.replaceChildren(...options("Everyone", users));
    user.classList.toggle("ji-hidden", users.length < 2);
    [provider.value, status.value, user.value] = keep;
  }

  /** The picture box: the thumbnail once it has come, else a placeholder saying why not. */
  function picture(r) {
    const box = h("div", { class: "ji-thumb" });
    const url = thumbs.get(r.id);
    if (url) box.append(h("img", { src: url, alt: r.prompt }));
    else if (!r.n_images || r.status !== "succeeded") box.textContent = r.status === "succeeded" ? "no image" : r.status;
    return box;
  }

  /** Several people's jobs in view (a team store): tiles then say whose each is. */
  const team = () => !user.classList.contains("ji-hidden");

  function tile(r) {
    const img = picture(r);
    const when = r.created ? new Date(r.created).toLocaleString() : "";
    const by = r.user ? ` · ${r.user}${r.host ? `@${r.host}` : ""}` : "";
    const b = h("button", { type: "button", class: "ji-tile", role: "listitem", "data-id": r.id, title: `${r.prompt}\n${r.provider} · ${r.kind} · ${r.status} · ${when}${by}`,
      "aria-current": r.id === model.get("selected") ? "true" : null, onclick: () => model.send({ type: "open", id: r.id }) },
    img,
    h("span", {}, r.prompt),
    h("span", { class: "ji-meta" }, h("i", { class: "ji-dot", "data-status": r.status }), `${r.kind} · ${r.provider}${r.user && team() ? ` · ${r.user}` : ""}`));
    b.setAttribute("aria-label", `${r.prompt} (${r.kind}, ${r.status})`);
    return b;
  }

  function draw() {
    const rows = filterRows(model.get("rows") || [], { provider: provider.value, status: status.value, user: user.value, text: search.value });
    const page = rows.slice(0, shown);
    tiles.replaceChildren(...page.map(tile));
    const total = model.get("total");
    const extra = total > (model.get("rows") || []).length ? ` (newest ${(model.get("rows") || []).length} of ${total})` : "";
    count.textContent = `${rows.length} job${rows.length === 1 ? "" : "s"}${extra}`;
    more.classList.toggle("ji-hidden", rows.length <= shown);
    if (observer) tiles.querySelectorAll(".ji-tile").forEach((t) => thumbs.has(t.dataset.id) || observer.observe(t));
    else request(page.map((r) => r.id));
  }

  // The static picture beside the gallery is hidden once the kernel is there (a reply or a
  // change), so a gallery restored from saved widget state with no kernel leaves it in sight.
  let fallback = null, tries = 0;
  const hide = () => {
    fallback = fallback || hideFallback(el, model.get("fallback_key"));
    if (!fallback && tries < 5) setTimeout(hide, 100 * 2 ** tries++); // not attached yet
  };
  model.on("msg:custom", (msg, buffers) => {
    if (!msg || msg.type !== "thumbs") return;
    hide();
    msg.ids.forEach((id, i) => {
      const dv = buffers && buffers[i];
      if (!dv || !dv.byteLength) return;
      const url = blobUrl(dv);
      thumbs.set(id, url);
      const box = tiles.querySelector(`.ji-tile[data-id="${id}"] .ji-thumb`);
      const row = (model.get("rows") || []).find((r) => r.id === id);
      if (box && row) box.replaceWith(picture(row));
    });
  });
  const reset = () => { shown = PAGE; draw(); };
  search.addEventListener("input", reset);
  provider.addEventListener("change", reset);
  status.addEventListener("change", reset);
  user.addEventListener("change", reset);
  model.on("change:rows", () => { fillOptions(); draw(); hide(); });
  model.on("change:selected", () => { draw(); hide(); });
  fillOptions();
  draw();
  model.on("change:fallback_key", hide);
  return () => {
    if (fallback) fallback.classList.remove("ji-hidden");
    if (observer) observer.disconnect();
    thumbs.forEach((u) => u && URL.revokeObjectURL(u));
  };
}

export default { render };
