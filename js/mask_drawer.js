// Mask drawer for Vary (Region) and every masked edit. All painting happens here, on an
// offscreen bitmap at the image's own pixel size (white = redraw); the display canvas only shows
// it scaled over the picture. Submit exports a black/white 8-bit grayscale PNG of exactly the
// source size and sends it as a message buffer: {type: "submit", prompt} + [png]; Cancel sends
// {type: "cancel"} (the messages are listed in jupyter_imagine/widgets/_protocol.py).

import { blobUrl, h } from "./_dom.js";

export const TOOLS = ["brush", "eraser", "rect"];

/** The mask: one byte per source pixel (0 keep, 255 redraw), with an undo/redo list of ops. */
export class MaskModel {
  constructor(width, height) {
    this.width = Math.max(1, Math.round(width));
    this.height = Math.max(1, Math.round(height));
    this.data = new Uint8Array(this.width * this.height);
    this.ops = [];
    this.undone = [];
    this.live = null;
    this.dirty = null;
  }

  _mark(x0, y0, x1, y1) {
    const d = this.dirty;
    this.dirty = d ? [Math.min(d[0], x0), Math.min(d[1], y0), Math.max(d[2], x1), Math.max(d[3], y1)] : [x0, y0, x1, y1];
  }
  _all() { this.dirty = [0, 0, this.width, this.height]; }

  /** Fill the disc of radius r around (cx, cy) (source pixels; pixel centres at +0.5). */
  disc(cx, cy, r, v) {
    const { width: w, height: h, data } = this;
    r = Math.max(0.5, r);
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(h - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - cy, span = r * r - dy * dy;
      if (span < 0) continue;
      const dx = Math.sqrt(span);
      const x0 = Math.max(0, Math.ceil(cx - dx - 0.5)), x1 = Math.min(w - 1, Math.floor(cx + dx - 0.5));
      if (x1 >= x0) data.fill(v, y * w + x0, y * w + x1 + 1);
    }
    this._mark(Math.max(0, Math.floor(cx - r)), y0, Math.min(w, Math.ceil(cx + r) + 1), y1 + 1);
  }

  segment(ax, ay, bx, by, r, v) {
    const n = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / Math.max(1, r / 3)));
    for (let i = 1; i <= n; i++) this.disc(ax + ((bx - ax) * i) / n, ay + ((by - ay) * i) / n, r, v);
  }

  rect(x0, y0, x1, y1, v) {
    const { width: w, height: h, data } = this;
    const ax = Math.max(0, Math.round(Math.min(x0, x1))), bx = Math.min(w, Math.round(Math.max(x0, x1)));
    const ay = Math.max(0, Math.round(Math.min(y0, y1))), by = Math.min(h, Math.round(Math.max(y0, y1)));
    for (let y = ay; y < by; y++) data.fill(v, y * w + ax, y * w + bx);
    if (bx > ax && by > ay) this._mark(ax, ay, bx, by);
  }

  _draw(op) {
    if (op.t === "stroke") {
      const p = op.pts;
      this.disc(p[0], p[1], op.r, op.v);
      for (let i = 2; i < p.length; i += 2) this.segment(p[i - 2], p[i - 1], p[i], p[i + 1], op.r, op.v);
    } else if (op.t === "rect") this.rect(op.x0, op.y0, op.x1, op.y1, op.v);
    else if (op.t === "clear") { this.data.fill(0); this._all(); }
    else if (op.t === "invert") { const d = this.data; for (let i = 0; i < d.length; i++) d[i] = 255 - d[i]; this._all(); }
  }

  _commit(op) { this.ops.push(op); this.undone = []; }

  /** Apply a whole op ({t: "stroke"|"rect"|"clear"|"invert", …}) and record it. */
  apply(op) { this._draw(op); this._commit(op); }

  beginStroke(x, y, r, v) {
    this.live = { t: "stroke", r, v, pts: [x, y] };
    this.disc(x, y, r, v);
  }
  extendStroke(x, y) {
    const op = this.live;
    if (!op) return;
    const p = op.pts, n = p.length;
    if (Math.abs(p[n - 2] - x) < 0.25 && Math.abs(p[n - 1] - y) < 0.25) return;
    this.segment(p[n - 2], p[n - 1], x, y, op.r, op.v);
    p.push(x, y);
  }
  endStroke() { if (this.live) { this._commit(this.live); this.live = null; } }

  clear() { this.apply({ t: "clear" }); }
  invert() { this.apply({ t: "invert" }); }
  get canUndo() { return this.ops.length > 0; }
  get canRedo() { return this.undone.length > 0; }

  _replay() { this.data.fill(0); for (const op of this.ops) this._draw(op); this._all(); }
  undo() { if (this.ops.length) { this.undone.push(this.ops.pop()); this._replay(); } }
  redo() { if (this.undone.length) { const op = this.undone.pop(); this._draw(op); this.ops.push(op); } }

  isEmpty() { return !this.data.some((v) => v !== 0); }
  coverage() { let n = 0; for (const v of this.data) if (v) n++; return n / this.data.length; }

  /** The mask as a black/white grayscale PNG of exactly width × height. */
  toPNG() { return encodePNG(this.width, this.height, this.data); }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function readAll(readable) {
  const reader = readable.getReader(), parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.length;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** zlib (RFC 1950) stream of ``raw``: CompressionStream where there is one, else stored blocks. */
export async function zlib(raw) {
  if (typeof CompressionStream === "function") {
    const cs = new CompressionStream("deflate");
    const writer = cs.writable.getWriter();
    writer.write(raw);
    writer.close();
    return readAll(cs.readable);
  }
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const out = new Uint8Array(2 + raw.length + blocks * 5 + 4);
  out.set([0x78, 0x01]);
  let at = 2, a = 1, b = 0;
  for (let i = 0; i < blocks; i++) {
    const chunk = raw.subarray(i * 65535, (i + 1) * 65535), n = chunk.length;
    out.set([i === blocks - 1 ? 1 : 0, n & 255, n >> 8, ~n & 255, (~n >> 8) & 255], at);
    out.set(chunk, at + 5);
    at += 5 + n;
  }
  for (let i = 0; i < raw.length; i++) { a = (a + raw[i]) % 65521; b = (b + a) % 65521; }
  new DataView(out.buffer).setUint32(at, ((b << 16) | a) >>> 0);
  return out;
}

/** An 8-bit grayscale PNG (colour type 0) of ``gray`` (width × height bytes). */
export async function encodePNG(width, height, gray) {
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) raw.set(gray.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const chunk = (type, body) => {
    const out = new Uint8Array(12 + body.length), dv = new DataView(out.buffer);
    dv.setUint32(0, body.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(body, 8);
    dv.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
    return out;
  };
  const ihdr = new Uint8Array(13), dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const parts = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", await zlib(raw)), chunk("IEND", new Uint8Array(0))];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { png.set(p, at); at += p.length; }
  return png;
}

const OVERLAY = [236, 64, 122];

function render({ model, el }) {
  const W = model.get("width"), H = model.get("height");
  const mask = new MaskModel(W, H);
  let tool = "brush", size = Math.max(4, Math.round(Math.max(W, H) / 16)), opacity = 0.55;
  let drag = null, hover = null, frame = 0, submitting = false, bg = null, bgUrl = null;

  const btn = (label, onclick, extra = {}) => h("button", { type: "button", onclick, ...extra }, label);
  const toolButtons = {
    brush: btn("Brush", () => setTool("brush"), { title: "Brush (B)" }),
    eraser: btn("Eraser", () => setTool("eraser"), { title: "Eraser (E)" }),
    rect: btn("Rectangle", () => setTool("rect"), { title: "Rectangle (R)" }),
  };
  const undo = btn("Undo", () => edit(() => mask.undo()), { title: "Undo (Ctrl+Z)" });
  const redo = btn("Redo", () => edit(() => mask.redo()), { title: "Redo (Ctrl+Shift+Z / Ctrl+Y)" });
  const clear = btn("Clear", () => edit(() => mask.clear()));
  const invert = btn("Invert", () => edit(() => mask.invert()), { title: "Invert (I)" });
  const sizeInput = h("input", { type: "range", min: "2", max: String(Math.max(8, Math.round(Math.max(W, H) / 3))), value: String(size), "aria-label": "Brush size" });
  const opacityInput = h("input", { type: "range", min: "10", max: "90", value: String(opacity * 100), "aria-label": "Overlay opacity" });
  sizeInput.addEventListener("input", () => { size = Number(sizeInput.value); schedule(); });
  opacityInput.addEventListener("input", () => { opacity = Number(opacityInput.value) / 100; schedule(); });

  const dispW = Math.min(W, 740), dispH = Math.max(1, Math.round((dispW * H) / W));
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  const canvas = h("canvas", { class: "ji-canvas", width: String(Math.round(dispW * dpr)), height: String(Math.round(dispH * dpr)),
    role: "img", "aria-label": `Mask canvas, ${W}×${H}: paint the region to redraw` });
  canvas.style.aspectRatio = `${W} / ${H}`;
  const promptInput = h("textarea", { rows: "1", "aria-label": "Prompt" });
  promptInput.value = model.get("prompt");
  const cancel = btn("Cancel", () => model.send({ type: "cancel" }));
  const submit = btn("Submit", onSubmit, { class: "ji-primary" });
  const error = h("div", { class: "ji-line ji-error ji-hidden", role: "alert" });
  const head = h("div", { class: "ji-head" },
    h("span", { class: "ji-chip" }, model.get("provider_label") || "mask"),
    model.get("sandbox") ? h("span", { class: "ji-chip ji-sandbox" }, "SANDBOX") : null,
    h("span", { class: "ji-chip" }, model.get("title") || "Vary (Region)"),
    h("span", { class: "ji-sliders" }, h("label", {}, "Size", sizeInput), h("label", {}, "Overlay", opacityInput)));
  const hint = h("div", { class: "ji-hint" },
    `Paint the region to redraw; the mask is sent at the image's size, ${W}×${H}. Keys: B E R, [ ], Ctrl+Z / Ctrl+Y.`);
  const root = h("div", { class: "ji ji-card ji-drawer", tabindex: "0", "data-lm-suppress-shortcuts": "true", role: "group", "aria-label": "Mask drawer" },
    head,
    h("div", { class: "ji-tools", role: "toolbar", "aria-label": "Mask tools" },
      toolButtons.brush, toolButtons.eraser, toolButtons.rect, h("span", { class: "ji-sep" }),
      undo, redo, clear, invert),
    canvas, hint,
    h("div", { class: "ji-submit-row" }, promptInput, cancel, submit),
    error);
  el.append(root);

  // Offscreen overlay at source size: the mask tinted, redrawn only where it changed.
  const ctx = canvas.getContext && canvas.getContext("2d");
  const ov = document.createElement("canvas");
  ov.width = W; ov.height = H;
  const octx = ctx && ov.getContext("2d");
  const pixels = octx ? octx.createImageData(W, H) : null;

  function syncOverlay() {
    const d = mask.dirty;
    mask.dirty = null;
    if (!d || !pixels) return;
    const [x0, y0, x1, y1] = d, px = pixels.data, m = mask.data;
    for (let y = y0; y < y1; y++) {
      for (let x = x0, i = y * W + x0; x < x1; x++, i++) {
        const j = i * 4;
        px[j] = OVERLAY[0]; px[j + 1] = OVERLAY[1]; px[j + 2] = OVERLAY[2]; px[j + 3] = m[i];
      }
    }
    octx.putImageData(pixels, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  function draw() {
    frame = 0;
    syncOverlay();
    if (!ctx) return;
    const cw = canvas.width, ch = canvas.height, k = cw / W;
    ctx.clearRect(0, 0, cw, ch);
    if (bg) ctx.drawImage(bg, 0, 0, cw, ch);
    ctx.globalAlpha = opacity;
    ctx.drawImage(ov, 0, 0, cw, ch);
    ctx.globalAlpha = 1;
    ctx.lineWidth = Math.max(1, dpr);
    if (drag) {
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.strokeStyle = tool === "eraser" ? "#fff" : `rgb(${OVERLAY})`;
      ctx.strokeRect(Math.min(drag.x0, drag.x1) * k, Math.min(drag.y0, drag.y1) * k, Math.abs(drag.x1 - drag.x0) * k, Math.abs(drag.y1 - drag.y0) * k);
      ctx.setLineDash([]);
    } else if (hover && tool !== "rect") {
      ctx.strokeStyle = "rgba(255,255,255,.9)";
      ctx.beginPath();
      ctx.arc(hover.x * k, hover.y * k, (size / 2) * k, 0, Math.PI * 2);
      ctx.stroke();
    }
  }
  function schedule() {
    if (frame) return;
    frame = typeof requestAnimationFrame === "function" ? requestAnimationFrame(draw) : setTimeout(draw, 0);
  }

  function controls() {
    for (const [name, b] of Object.entries(toolButtons)) b.setAttribute("aria-pressed", String(name === tool));
    undo.disabled = !mask.canUndo;
    redo.disabled = !mask.canRedo;
    submit.disabled = submitting;
    submit.textContent = submitting ? "Submitting…" : "Submit";
    root.dataset.tool = tool;
  }
  function setTool(name) { tool = name; controls(); schedule(); }
  function edit(fn) { fn(); showError(""); controls(); schedule(); }
  function showError(text) { error.textContent = text; error.classList.toggle("ji-hidden", !text); }

  function toSource(e) {
    const r = canvas.getBoundingClientRect();
    const x = r.width ? ((e.clientX - r.left) / r.width) * W : e.offsetX || 0;
    const y = r.height ? ((e.clientY - r.top) / r.height) * H : e.offsetY || 0;
    return { x: Math.max(0, Math.min(W, x)), y: Math.max(0, Math.min(H, y)) };
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    root.focus({ preventScroll: true });
    if (canvas.setPointerCapture && e.pointerId != null) { try { canvas.setPointerCapture(e.pointerId); } catch { /* synthetic */ } }
    const p = toSource(e);
    if (tool === "rect") drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
    else mask.beginStroke(p.x, p.y, size / 2, tool === "eraser" ? 0 : 255);
    schedule();
  });
  canvas.addEventListener("pointermove", (e) => {
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = toSource(ev);
      hover = p;
      if (drag) { drag.x1 = p.x; drag.y1 = p.y; } else if (mask.live) mask.extendStroke(p.x, p.y);
    }
    schedule();
  });
  const finish = () => {
    if (drag) {
      const { x0, y0, x1, y1 } = drag;
      drag = null;
      mask.apply({ t: "rect", x0, y0, x1, y1, v: 255 });
    } else mask.endStroke();
    showError("");
    controls();
    schedule();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  canvas.addEventListener("pointerleave", () => { hover = null; schedule(); });

  // Keys act only while the drawer has focus; data-lm-suppress-shortcuts keeps JupyterLab's
  // command keys (B inserts a cell, Z undoes a cell operation …) from firing meanwhile.
  root.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement;
    if (typing) return;
    const mod = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
    let handled = true;
    if (mod && key === "z") edit(() => (e.shiftKey ? mask.redo() : mask.undo()));
    else if (mod && key === "y") edit(() => mask.redo());
    else if (mod) handled = false;
    else if (key === "b") setTool("brush");
    else if (key === "e") setTool("eraser");
    else if (key === "r") setTool("rect");
    else if (key === "i") edit(() => mask.invert());
    else if (key === "[" || key === "]") {
      size = Math.max(2, Math.min(Number(sizeInput.max), Math.round(size * (key === "]" ? 1.25 : 0.8))));
      sizeInput.value = String(size);
      schedule();
    } else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  });

  async function onSubmit() {
    if (submitting) return;
    if (mask.isEmpty()) { showError("The mask is empty: paint the region to redraw first."); return; }
    submitting = true;
    showError("");
    controls();
    const png = await mask.toPNG();
    model.send({ type: "submit", prompt: promptInput.value }, undefined, [png.buffer]);
  }

  function onState() {
    const text = model.get("error");
    if (text || model.get("status") === "drawing") submitting = false;
    showError(text);
    controls();
  }
  model.on("change:error", onState);
  model.on("change:status", onState);

  function loadImage() {
    const dv = model.get("image");
    if (!dv || !dv.byteLength || typeof Image === "undefined" || !URL.createObjectURL) return;
    if (bgUrl) URL.revokeObjectURL(bgUrl);
    bgUrl = blobUrl(dv);
    const img = new Image();
    img.onload = () => { bg = img; schedule(); };
    img.src = bgUrl;
  }
  model.on("change:image", loadImage);
  loadImage();
  controls();
  mask._all();
  schedule();
  onState();

  root._mask = mask; // for tests and for debugging in the browser console
  return () => { if (bgUrl) URL.revokeObjectURL(bgUrl); };
}

export default { render };
