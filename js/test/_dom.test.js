// The DOM helpers every widget shares (inlined into each widget's ESM by widgets/_assets.py).
import { afterEach, describe, expect, it } from "vitest";
import { blobUrl, h, hideFallback, sniff } from "../_dom.js";

afterEach(() => { document.body.replaceChildren(); });

describe("h", () => {
  it("sets attributes, text, listeners and children, skipping null and false", () => {
    let clicked = 0;
    const b = h("button", { class: "x", "aria-label": "Reroll", disabled: false, title: null, onclick: () => clicked++ }, "🔄", null, h("span", { text: "Reroll" }));
    expect(b.className).toBe("x");
    expect(b.getAttribute("aria-label")).toBe("Reroll");
    expect(b.hasAttribute("disabled") || b.hasAttribute("title")).toBe(false);
    expect(b.textContent).toBe("🔄Reroll");
    b.click();
    expect(clicked).toBe(1);
    expect(h("input", { required: true }).getAttribute("required")).toBe("");
  });
});

describe("images", () => {
  it("sniffs JPEG, WebP and PNG bytes and makes no URL of nothing", () => {
    const dv = (...bytes) => new DataView(new Uint8Array(bytes).buffer);
    expect(sniff(dv(0xff, 0xd8))).toBe("image/jpeg");
    expect(sniff(dv(0x52, 0x49))).toBe("image/webp");
    expect(sniff(dv(0x89, 0x50))).toBe("image/png");
    expect(blobUrl(null)).toBeNull();
    expect(blobUrl(dv())).toBeNull();
  });
});

describe("static fallback", () => {
  it("hides the PNG output that carries this view's key, and only that one", () => {
    const key = "k3y0123456789abcdef";
    const png = (text) => `data:image/png;base64,${btoa(`\x89PNG\r\n\x1a\n....tEXtjupyter_imagine.view\0${text}....`)}`;
    const area = document.createElement("div");
    const other = document.createElement("div");
    other.innerHTML = `<img src="${png("someone-else")}">`;
    const mine = document.createElement("div");
    mine.innerHTML = `<img src="${png(key)}">`;
    const out = document.createElement("div");
    const el = document.createElement("div");
    out.append(document.createElement("div"));
    out.firstChild.append(el);
    area.append(other, mine, out);
    document.body.append(area);
    expect(hideFallback(el, key)).toBe(mine);
    expect(mine.classList.contains("ji-hidden")).toBe(true);
    expect(other.classList.contains("ji-hidden")).toBe(false);
    expect(hideFallback(el, "")).toBeNull();
  });

  it("finds the key in a JPEG's comment as well", () => {
    const key = "k3y0123456789abcdef";
    const mine = document.createElement("div");
    mine.innerHTML = `<img src="data:image/jpeg;base64,${btoa(`\xff\xd8\xff\xe0..JFIF..\xff\xfe..jupyter_imagine.view\0${key}....`)}">`;
    const el = document.createElement("div");
    document.body.append(mine, el);
    expect(hideFallback(el, "someone-else")).toBeNull();
    expect(hideFallback(el, key)).toBe(mine);
  });
});
