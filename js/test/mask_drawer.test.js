import { inflateSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import widget, { MaskModel, encodePNG, zlib } from "../mask_drawer.js";
import { button, fakeModel, mount } from "./fake_model.js";

const at = (m, x, y) => m.data[y * m.width + x];
const painted = (m) => m.data.reduce((n, v) => n + (v === 255), 0);

/** Width, height, colour type and pixel rows of an 8-bit grayscale PNG. */
function decode(png) {
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  expect([...png.subarray(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
  let at = 8, idat = [], ihdr;
  for (;;) {
    const len = dv.getUint32(at), type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const body = png.subarray(at + 8, at + 8 + len);
    if (type === "IHDR") ihdr = body;
    if (type === "IDAT") idat.push(body);
    at += 12 + len;
    if (type === "IEND") break;
  }
  const h = new DataView(ihdr.buffer, ihdr.byteOffset);
  const width = h.getUint32(0), height = h.getUint32(4);
  const raw = inflateSync(Buffer.concat(idat));
  const rows = [];
  for (let y = 0; y < height; y++) {
    expect(raw[y * (width + 1)]).toBe(0);
    rows.push(raw.subarray(y * (width + 1) + 1, (y + 1) * (width + 1)));
  }
  return { width, height, depth: ihdr[8], colour: ihdr[9], rows };
}

describe("MaskModel", () => {
  it("a stroke paints a round-capped band at the source size", () => {
    const m = new MaskModel(200, 100);
    m.beginStroke(20, 50, 5, 255);
    m.extendStroke(120, 50);
    m.endStroke();
    expect(at(m, 20, 50)).toBe(255);
    expect(at(m, 70, 50)).toBe(255);
    expect(at(m, 120, 52)).toBe(255);
    expect(at(m, 70, 58)).toBe(0);
    expect(at(m, 150, 50)).toBe(0);
    expect(at(m, 12, 50)).toBe(0);
    const strip = [...Array(200).keys()].filter((x) => at(m, x, 50) === 255);
    expect(strip[0]).toBe(15);
    expect(strip.at(-1)).toBe(124);
    expect(strip).toHaveLength(110); // continuous: no gaps between stamps
    expect(m.ops).toHaveLength(1);
  });

  it("the eraser takes paint away; strokes outside the image are clipped", () => {
    const m = new MaskModel(50, 50);
    m.apply({ t: "rect", x0: 0, y0: 0, x1: 50, y1: 50, v: 255 });
    m.beginStroke(25, 25, 4, 0);
    m.endStroke();
    expect(at(m, 25, 25)).toBe(0);
    expect(at(m, 5, 5)).toBe(255);
    m.beginStroke(-10, -10, 8, 0);
    m.extendStroke(70, -10);
    m.endStroke();
    expect(at(m, 0, 0)).toBe(255);
  });

  it("a rectangle fills exactly its pixels, whichever corner it starts from", () => {
    const m = new MaskModel(40, 30);
    m.apply({ t: "rect", x0: 30, y0: 20, x1: 10, y1: 5, v: 255 });
    expect(painted(m)).toBe(20 * 15);
    expect(at(m, 10, 5)).toBe(255);
    expect(at(m, 29, 19)).toBe(255);
    expect(at(m, 30, 19)).toBe(0);
    expect(at(m, 9, 5)).toBe(0);
  });

  it("undo and redo walk the ops; a new op drops the redo list", () => {
    const m = new MaskModel(40, 30);
    m.apply({ t: "rect", x0: 0, y0: 0, x1: 10, y1: 10, v: 255 });
    m.beginStroke(30, 20, 3, 255);
    m.endStroke();
    const both = painted(m);
    m.undo();
    expect(painted(m)).toBe(100);
    expect(m.canRedo).toBe(true);
    m.redo();
    expect(painted(m)).toBe(both);
    m.undo();
    m.undo();
    expect(m.isEmpty()).toBe(true);
    expect(m.canUndo).toBe(false);
    m.redo();
    m.apply({ t: "rect", x0: 20, y0: 20, x1: 22, y1: 22, v: 255 });
    expect(m.canRedo).toBe(false);
    expect(painted(m)).toBe(104);
  });

  it("invert and clear are undoable too", () => {
    const m = new MaskModel(10, 10);
    m.apply({ t: "rect", x0: 0, y0: 0, x1: 5, y1: 10, v: 255 });
    m.invert();
    expect(at(m, 0, 0)).toBe(0);
    expect(at(m, 9, 9)).toBe(255);
    expect(painted(m)).toBe(50);
    m.clear();
    expect(m.isEmpty()).toBe(true);
    m.undo();
    expect(at(m, 9, 9)).toBe(255);
    m.undo();
    expect(at(m, 0, 0)).toBe(255);
    expect(at(m, 9, 9)).toBe(0);
  });
});

describe("export", () => {
  it("is a black/white 8-bit grayscale PNG of exactly the source size", async () => {
    const m = new MaskModel(301, 157);
    m.apply({ t: "rect", x0: 10, y0: 20, x1: 110, y1: 60, v: 255 });
    m.beginStroke(200, 100, 12, 255);
    m.extendStroke(280, 140);
    m.endStroke();
    const png = decode(await m.toPNG());
    expect([png.width, png.height, png.depth, png.colour]).toEqual([301, 157, 8, 0]);
    for (let y = 0; y < 157; y++) {
      expect(Buffer.from(png.rows[y]).equals(Buffer.from(m.data.subarray(y * 301, (y + 1) * 301)))).toBe(true);
    }
    expect(new Set(png.rows.flatMap((r) => [...r]))).toEqual(new Set([0, 255]));
  });

  it("falls back to stored deflate blocks without CompressionStream", async () => {
    const saved = globalThis.CompressionStream;
    globalThis.CompressionStream = undefined;
    try {
      const raw = Uint8Array.from({ length: 70000 }, (_, i) => (i * 7) & 255);
      expect(Buffer.from(inflateSync(await zlib(raw)))).toEqual(Buffer.from(raw));
      const png = decode(await encodePNG(3, 2, Uint8Array.from([0, 255, 0, 255, 0, 255])));
      expect([...png.rows[1]]).toEqual([255, 0, 255]);
    } finally {
      globalThis.CompressionStream = saved;
    }
  });
});

function drawer(extra = {}) {
  const model = fakeModel({ job_id: "j1", provider_label: "APIFRAME", sandbox: true, title: "Vary (Region)",
    prompt: "a lighthouse at dusk", image: new DataView(new ArrayBuffer(0)), width: 300, height: 200,
    status: "drawing", error: "", ...extra });
  const { el } = mount(widget, model);
  const canvas = el.querySelector("canvas");
  canvas.getBoundingClientRect = () => ({ left: 0, top: 0, width: 150, height: 100, right: 150, bottom: 100 });
  const root = el.querySelector(".ji-drawer");
  const pointer = (type, x, y) => canvas.dispatchEvent(new MouseEvent(type, { clientX: x, clientY: y, bubbles: true, button: 0 }));
  const key = (k, opts = {}, target = root) => target.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true, cancelable: true, ...opts }));
  return { model, el, canvas, root, pointer, key, mask: root._mask };
}

afterEach(() => document.body.replaceChildren());

describe("drawer UI", () => {
  it("has named controls, a labelled canvas and suppresses JupyterLab's shortcuts", () => {
    const { el, root, canvas } = drawer();
    for (const name of ["Brush", "Eraser", "Rectangle", "Undo", "Redo", "Clear", "Invert", "Submit"]) {
      expect(button(el, name), name).toBeTruthy();
    }
    expect(root.hasAttribute("data-lm-suppress-shortcuts")).toBe(true);
    expect(root.getAttribute("tabindex")).toBe("0");
    expect(canvas.getAttribute("aria-label")).toMatch(/^Mask canvas, 300×200/);
    expect(el.querySelector('textarea[aria-label="Prompt"]').value).toBe("a lighthouse at dusk");
    expect(el.querySelector('input[aria-label="Brush size"]')).toBeTruthy();
    expect(el.querySelector('input[aria-label="Overlay opacity"]')).toBeTruthy();
    expect(button(el, "Brush").getAttribute("aria-pressed")).toBe("true");
  });

  it("pointer strokes paint at source resolution (display is scaled)", () => {
    const { pointer, mask, el } = drawer();
    pointer("pointerdown", 20, 50);
    pointer("pointermove", 60, 50);
    pointer("pointerup", 60, 50);
    expect(at(mask, 40, 100)).toBe(255);
    expect(at(mask, 120, 100)).toBe(255);
    expect(at(mask, 200, 100)).toBe(0);
    expect(button(el, "Undo").disabled).toBe(false);
    button(el, "Undo").click();
    expect(mask.isEmpty()).toBe(true);
    button(el, "Redo").click();
    expect(at(mask, 120, 100)).toBe(255);
  });

  it("keys switch tools and undo only while the drawer has focus, not while typing", () => {
    const { key, el, pointer, mask } = drawer();
    key("r");
    expect(button(el, "Rectangle").getAttribute("aria-pressed")).toBe("true");
    pointer("pointerdown", 10, 10);
    pointer("pointermove", 20, 30);
    pointer("pointerup", 20, 30);
    expect(painted(mask)).toBe(20 * 40);
    key("e");
    expect(button(el, "Eraser").getAttribute("aria-pressed")).toBe("true");
    key("z", { ctrlKey: true });
    expect(mask.isEmpty()).toBe(true);
    key("y", { ctrlKey: true });
    expect(painted(mask)).toBe(800);
    const prompt = el.querySelector("textarea");
    key("b", {}, prompt);
    expect(button(el, "Eraser").getAttribute("aria-pressed")).toBe("true");
    const size = el.querySelector('input[aria-label="Brush size"]');
    const before = Number(size.value);
    key("]");
    expect(Number(size.value)).toBeGreaterThan(before);
  });

  it("Invert and Clear buttons", () => {
    const { el, mask } = drawer();
    button(el, "Invert").click();
    expect(painted(mask)).toBe(300 * 200);
    button(el, "Clear").click();
    expect(mask.isEmpty()).toBe(true);
  });

  it("Submit sends the prompt and the PNG at source size as a buffer; a refusal shows and re-enables", async () => {
    const { el, model, pointer } = drawer();
    pointer("pointerdown", 75, 50);
    pointer("pointerup", 75, 50);
    el.querySelector("textarea").value = "a lighthouse under the northern lights";
    button(el, "Submit").click();
    await new Promise((r) => setTimeout(r, 50));
    expect(model.sent).toHaveLength(1);
    const { content, buffers } = model.sent[0];
    expect(content).toEqual({ type: "submit", prompt: "a lighthouse under the northern lights" });
    const png = decode(new Uint8Array(buffers[0]));
    expect([png.width, png.height]).toEqual([300, 200]);
    expect(png.rows[100][150]).toBe(255);
    expect(button(el, "Submitting…").disabled).toBe(true);
    model.update({ error: "mask is 10×10 but the image is 300×200" });
    expect(el.querySelector('[role="alert"]').textContent).toBe("mask is 10×10 but the image is 300×200");
    expect(button(el, "Submit").disabled).toBe(false);
  });

  it("an empty mask is not sent", () => {
    const { el, model } = drawer();
    button(el, "Submit").click();
    expect(model.sent).toHaveLength(0);
    expect(el.querySelector('[role="alert"]').textContent).toMatch(/empty/);
  });

  it("Cancel sends cancel", () => {
    const { el, model } = drawer();
    button(el, "Cancel").click();
    expect(model.sent[0].content).toEqual({ type: "cancel" });
  });
});
