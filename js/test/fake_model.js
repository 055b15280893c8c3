/** A stand-in for anywidget's model: get/set/on/send, plus helpers to drive it from a test. */
export function fakeModel(state) {
  const listeners = {};
  const sent = [];
  return {
    sent,
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; },
    save_changes() {},
    on(name, fn) { (listeners[name] ||= []).push(fn); },
    off() {},
    send(content, callbacks, buffers) { sent.push({ content, buffers }); },
    /** Change traits as Python would, firing change:<name> for each. */
    update(changes) {
      Object.assign(state, changes);
      for (const k of Object.keys(changes)) (listeners[`change:${k}`] || []).forEach((f) => f());
    },
    /** A custom message from Python. */
    emit(msg, buffers) { (listeners["msg:custom"] || []).forEach((f) => f(msg, buffers)); },
  };
}

/** Render an anywidget module into a fresh element attached to the document. */
export function mount(widget, model) {
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = widget.render({ model, el });
  return { el, cleanup };
}

/** The buttons in ``el`` by accessible name (their text, here). */
export const button = (el, name) =>
  [...el.querySelectorAll("button")].find((b) => (b.getAttribute("aria-label") || b.textContent) === name);

/** A DataView over ``bytes`` (how ipywidgets hands binary traits to a view). */
export const view = (bytes) => new DataView(Uint8Array.from(bytes).buffer);
