import { afterEach, describe, expect, it, vi } from "vitest";
import loader, { load, WAIT_MS } from "../_loader.js";

afterEach(() => { document.head.replaceChildren(); vi.useRealTimers(); });

/** A shared code model as Python's WidgetCode sends it. */
const code = (digest) => {
  const state = { name: "job_view.js", esm: "export default {}", css: ".ji { color: red }", digest };
  return { get: (k) => state[k] };
};

/** A view's model whose widget manager registers the shared model after `misses` lookups. */
function viewModel(shared, misses = 0) {
  const asked = [];
  return {
    asked,
    get: (k) => (k === "_code" ? "IPY_MODEL_c0de" : undefined),
    widget_manager: {
      get_model(id) {
        asked.push(id);
        return asked.length > misses ? Promise.resolve(shared) : Promise.reject(new Error("widget model not found"));
      },
    },
  };
}

describe("loader", () => {
  it("finds the shared code model (waiting for it to be restored), adds the CSS once and renders with its module", async () => {
    vi.useFakeTimers();
    const rendered = [];
    // what importing the code would give (jsdom cannot import a blob: URL): primed by digest
    globalThis.__jupyter_imagine_esm.set("d1", Promise.resolve({ default: { render: ({ el }) => { rendered.push(el); return () => "cleanup"; } } }));
    const model = viewModel(code("d1"), 2);
    const el = document.createElement("div");
    const done = loader.render({ model, el });
    await vi.runAllTimersAsync();
    const cleanup = await done;
    expect(model.asked).toEqual(["c0de", "c0de", "c0de"]);
    expect(rendered).toEqual([el]);
    expect(cleanup()).toBe("cleanup");
    await loader.render({ model: viewModel(code("d1")), el });
    const styles = document.head.querySelectorAll("style");
    expect(styles).toHaveLength(1);
    expect(styles[0].textContent).toBe(".ji { color: red }");
  });

  it("gives up when the shared model never turns up (the view stays empty)", async () => {
    vi.useFakeTimers();
    const model = viewModel(code("d2"), Infinity);
    const result = load(model).then(() => "loaded", (err) => err.message);
    await vi.runAllTimersAsync();
    expect(await result).toBe("widget model not found");
    expect(model.asked).toHaveLength(WAIT_MS.length + 1);
  });
});
