// DOM helpers shared by every widget's ESM. anywidget evaluates an ESM from a string, where a
// relative import cannot resolve, so jupyter_imagine/widgets/_assets.py inlines this file in
// place of the line of a widget that imports from it; vitest imports it as it is.

/** Create an element: h("button", {class: "x", onclick}, "text", child…); `text` sets textContent. */
export function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...kids.filter((k) => k != null));
  return el;
}

/** The image type of bytes in a DataView: JPEG, WebP or (default) PNG. */
export const sniff = (dv) => (dv.getUint8(0) === 0xff ? "image/jpeg" : dv.getUint8(0) === 0x52 ? "image/webp" : "image/png");

/** A blob URL of image bytes (a DataView), or null for none. Revoke it when done. */
export const blobUrl = (dv) => (dv && dv.byteLength ? URL.createObjectURL(new Blob([dv], { type: sniff(dv) })) : null);

/** Hide the static fallback picture displayed next to this live view (see findFallback).
 *  Returns it, or null. */
export function hideFallback(el, key) {
  const found = findFallback(el, key);
  if (found) found.classList.add("ji-hidden");
  return found;
}

/** The static fallback picture displayed next to this view (see widgets/_bundle.py): the output
 *  just before one of `el`'s ancestors whose JPEG (or PNG) carries `key` in its first bytes (a
 *  comment or text chunk). Returns it, or null. */
export function findFallback(el, key) {
  if (!key) return null;
  for (let node = el, depth = 0; node && depth < 12; node = node.parentElement, depth++) {
    let sib = node.previousElementSibling;
    for (let i = 0; sib && i < 3; sib = sib.previousElementSibling, i++) {
      for (const img of sib.querySelectorAll('img[src^="data:image/jpeg;base64,"], img[src^="data:image/png;base64,"]')) {
        const at = img.src.indexOf(",") + 1;
        let head = "";
        try { head = atob(img.src.slice(at, at + 4096)); } catch { /* not our picture */ }
        if (head.includes(key)) return sib;
      }
    }
  }
  return null;
}
