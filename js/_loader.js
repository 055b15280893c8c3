// The `_esm` of every jupyter_imagine widget: a few hundred bytes that load the real code once.
//
// anywidget stores a widget's `_esm` and `_css` in each model's state, so a notebook saved with
// widget state would carry one copy of the code per view. Instead each view's model holds a
// reference (`_code`, "IPY_MODEL_<id>") to one shared model per widget kind and kernel that
// carries the code (`esm`, `css` and their `digest`; jupyter_imagine/widgets/_shared_esm.py).
// This loader fetches that model from the widget manager (live, or restored from a saved
// notebook without a kernel), imports its ESM once per page and digest, adds its CSS once, and
// hands `render` over to it. If the shared model cannot be found the view stays empty, and the
// static picture next to it (widgets/_bundle.py) stays visible.

const PREFIX = "IPY_MODEL_";
/** How long to wait for the shared model to be registered (it may be restored after a view). */
export const WAIT_MS = [50, 100, 200, 400, 800, 1600, 3200];

/** Modules already imported, by digest: one per page however many models evaluate this file. */
const loaded = (globalThis.__jupyter_imagine_esm ||= new Map());

async function codeModel(model) {
  const ref = String(model.get("_code") || "");
  const id = ref.startsWith(PREFIX) ? ref.slice(PREFIX.length) : ref;
  for (let i = 0; ; i++) {
    try {
      const found = await model.widget_manager.get_model(id);
      if (found) return found;
    } catch (err) {
      if (i >= WAIT_MS.length) throw err;
    }
    if (i >= WAIT_MS.length) throw new Error(`jupyter_imagine: widget code ${ref} not found`);
    await new Promise((resolve) => setTimeout(resolve, WAIT_MS[i]));
  }
}

function addCss(name, css) {
  const id = `jupyter-imagine-css-${name}`;
  const style = document.getElementById(id) || document.head.appendChild(Object.assign(document.createElement("style"), { id }));
  if (style.textContent !== css) style.textContent = css;
}

/** The widget module the view's shared code model carries (imported once per digest). */
export async function load(model) {
  const code = await codeModel(model);
  const digest = code.get("digest");
  addCss(code.get("name"), code.get("css"));
  if (!loaded.has(digest)) {
    const url = URL.createObjectURL(new Blob([code.get("esm")], { type: "text/javascript" }));
    const promise = import(/* @vite-ignore */ url).finally(() => URL.revokeObjectURL(url));
    // a failed import is forgotten: a later view tries again
    promise.catch(() => loaded.delete(digest));
    loaded.set(digest, promise);
  }
  return (await loaded.get(digest)).default;
}

async function render(props) {
  const widget = await load(props.model);
  return widget.render(props);
}

export default { render };
