import { afterEach, describe, expect, it, vi } from "vitest";
import widget, { ORPHAN_MS, buttonText, errorText, formatElapsed, kindText, statusText } from "../job_view.js";
import { button, fakeModel, mount as mountModule, view } from "./fake_model.js";

const GRID = ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"];
const JPEG = [0xff, 0xd8, 0xff, 0xe0, 1, 2, 3];

function state(extra = {}) {
  return {
    job_id: "3f2a9c1e-0000", provider: "apiframe", provider_label: "APIFRAME", sandbox: true,
    kind: "imagine", action: "", prompt: "a lighthouse at dusk", status: "queued", progress: 0,
    queue_position: null, elapsed: 0, preview: new DataView(new ArrayBuffer(0)), images: [],
    sizes: [], arrangement: "", actions: [], action_state: {}, error: "", error_type: "", notice: "",
    fallback_key: "", images_rev: 0, ...extra,
  };
}

// `images` is not a trait: it is what the fake kernel answers an {type: "images"} request with.
const done = () => state({
  status: "succeeded", progress: 100, elapsed: 12.5, actions: GRID, arrangement: "grid", images_rev: 1,
  images: [1, 2, 3, 4].map(() => view(JPEG)), sizes: [1, 2, 3, 4].map(() => [512, 342]),
});

/** Answer the view's pending thumbnail requests as the kernel would, and forget them. */
function answer(model) {
  const asked = model.sent.filter((m) => m.content.type === "images");
  model.sent.splice(0, model.sent.length, ...model.sent.filter((m) => m.content.type !== "images"));
  for (const _ of asked) model.emit({ type: "images", rev: model.get("images_rev") || 0 }, model.get("images") || []);
  return asked.length;
}

/** Render the view with a live (fake) kernel behind it. */
function mount(widget, model) {
  const mounted = mountModule(widget, model);
  answer(model);
  return mounted;
}

afterEach(() => { document.body.replaceChildren(); vi.useRealTimers(); });

describe("status rendering", () => {
  it("an absent badge or cost leaves nothing behind (no 'null' text)", () => {
    const { el } = mount(widget, fakeModel(state({ sandbox: false, cost: "", status: "failed",
      error: "Banned prompt", error_type: "ModeratedPrompt" })));
    const chips = el.querySelector(".ji-chips");
    expect(chips.textContent).not.toContain("null");
    expect(chips.querySelector(".ji-sandbox")).toBeNull();
    expect(chips.querySelector(".ji-cost")).toBeNull();
  });

  it("queued: status, queue position, indeterminate bar, sandbox badge, no actions", () => {
    const { el } = mount(widget, fakeModel(state({ queue_position: 3 })));
    expect(el.querySelector(".ji-status").textContent).toMatch(/^Queued · #3 in queue · 0\.\d s$/); // a loaded machine may take a few tenths to render
    expect(el.querySelector(".ji-progress").classList.contains("ji-indeterminate")).toBe(true);
    expect(el.querySelector(".ji-sandbox").textContent).toBe("SANDBOX");
    expect(el.querySelector(".ji-chip").textContent).toBe("APIFRAME");
    expect(el.querySelector(".ji-prompt").textContent).toBe("a lighthouse at dusk");
    expect(el.querySelectorAll(".ji-actions button")).toHaveLength(0);
    expect(el.querySelector(".ji-cancel").classList.contains("ji-hidden")).toBe(false);
  });

  it("running: percentage on the bar and in the text, preview with alt text", () => {
    const model = fakeModel(state({ status: "running", progress: 40, preview: view(JPEG), elapsed: 5 }));
    const { el } = mount(widget, model);
    expect(el.querySelector(".ji-status").textContent).toMatch(/^Running 40% · 5\.0 s$/);
    const bar = el.querySelector('[role="progressbar"]');
    expect(bar.getAttribute("aria-valuenow")).toBe("40");
    expect(bar.firstChild.style.width).toBe("40%");
    const preview = el.querySelector(".ji-preview");
    expect(preview.classList.contains("ji-hidden")).toBe(false);
    expect(preview.alt).toBe("Preview of: a lighthouse at dusk");
    model.update({ progress: 70 });
    expect(bar.getAttribute("aria-valuenow")).toBe("70");
  });

  it("elapsed time keeps ticking while the job runs", () => {
    vi.useFakeTimers();
    const { el } = mount(widget, fakeModel(state({ status: "running", progress: 10, elapsed: 3 })));
    vi.advanceTimersByTime(2000);
    expect(el.querySelector(".ji-status").textContent).toMatch(/Running 10% · 5\.\d s/);
  });

  it("succeeded: four separately clickable images with the prompt as alt text, one button per action", () => {
    const { el } = mount(widget, fakeModel(done()));
    expect(el.querySelector(".ji-status").textContent).toBe("Done · 12 s");
    expect(el.querySelector(".ji-progress").classList.contains("ji-hidden")).toBe(true);
    const cells = el.querySelectorAll(".ji-media.ji-grid button.ji-cell img");
    expect([...cells].map((i) => i.alt)).toEqual([1, 2, 3, 4].map((i) => `a lighthouse at dusk (image ${i} of 4)`));
    expect(cells[0].getAttribute("width")).toBe("512");
    for (const label of GRID) expect(button(el, buttonText(label)), label).toBeTruthy();
    const texts = GRID.map((l) => (l === "🔄" ? "🔄 Reroll" : l)); // no button is only an emoji
    expect([...el.querySelectorAll(".ji-actions button")].map((b) => b.textContent)).toEqual(texts);
    expect(button(el, "U2").disabled).toBe(false);
    expect(el.querySelector(".ji-cancel").classList.contains("ji-hidden")).toBe(true);
  });

  it("a single image (an upscale) and a panorama", () => {
    const { el } = mount(widget, fakeModel(state({ status: "succeeded", kind: "upscale", action: "U2",
      actions: ["Vary (Region)"], arrangement: "single", images: [view(JPEG)], sizes: [[1024, 684]] })));
    expect(el.querySelector(".ji-media").className).toContain("ji-single");
    expect(el.querySelector(".ji-media img").alt).toBe("a lighthouse at dusk");
    expect(button(el, "Vary (Region)")).toBeTruthy();
    expect(el.textContent).toContain("U2 · upscale");
    const pano = mount(widget, fakeModel(state({ status: "succeeded", kind: "skybox", arrangement: "panorama", images: [view(JPEG)], sizes: [[2048, 1024]] })));
    expect(pano.el.querySelector(".ji-media").className).toContain("ji-panorama");
  });

  it("failed: one readable line in the provider's words", () => {
    const { el } = mount(widget, fakeModel(state({ status: "failed", error: "Banned prompt: 'gore'", error_type: "ModeratedPrompt", elapsed: 0.4 })));
    const line = el.querySelector('[role="alert"]');
    expect(line.textContent).toBe("Prompt refused: Banned prompt: 'gore'");
    expect(line.classList.contains("ji-hidden")).toBe(false);
    expect(el.querySelector(".ji-status").dataset.status).toBe("failed");
    expect(el.querySelectorAll(".ji-actions button")).toHaveLength(0);
  });

  it("quota, timeout and cancelled lines", () => {
    expect(errorText({ status: "failed", error: "Not enough credits", error_type: "QuotaExceeded" })).toBe("Out of credits: Not enough credits");
    expect(errorText({ status: "failed", error: "no result within 900 s", error_type: "JobTimeout" })).toBe("Timed out: no result within 900 s");
    expect(errorText({ status: "failed", error: "not sent: this imagine needs 4 credits", error_type: "BudgetExceeded" })).toBe("Over budget: not sent: this imagine needs 4 credits");
    expect(errorText({ status: "failed", error: "", error_type: "" })).toBe("Failed: the provider gave no reason");
    const { el } = mount(widget, fakeModel(state({ status: "cancelled" })));
    expect(el.querySelector('[role="alert"]').textContent).toBe("Cancelled");
  });

  it("moves from queued to done as the state changes", () => {
    const model = fakeModel(state());
    const { el } = mount(widget, model);
    model.update({ status: "running", progress: 50 });
    expect(el.querySelector(".ji-status").textContent).toMatch(/^Running 50%/);
    const d = done();
    model.update({ sizes: d.sizes, arrangement: "grid", images_rev: 1 });
    model.emit({ type: "images", rev: 1 }, d.images); // sent with a new revision, unasked
    expect(answer(model)).toBe(0);
    model.update({ status: "succeeded", progress: 100, actions: GRID });
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(4);
    expect(button(el, "V3").disabled).toBe(false);
  });
});

describe("buttons", () => {
  it("a click sends one message and disables the button without waiting for a reply", () => {
    const model = fakeModel(done());
    const { el } = mount(widget, model);
    button(el, "U2").click();
    button(el, "U2").click();
    expect(model.sent).toEqual([{ content: { type: "act", label: "U2" }, buffers: undefined }]);
    expect(button(el, "U2").disabled).toBe(true);
    expect(button(el, "U3").disabled).toBe(false);
  });

  it("stays disabled while its child runs, re-enabled and marked once it is done", () => {
    const model = fakeModel(done());
    const { el } = mount(widget, model);
    button(el, "U2").click();
    model.update({ action_state: { U2: "running" } });
    expect(button(el, "U2").disabled).toBe(true);
    model.update({ action_state: { U2: "succeeded" } });
    expect(button(el, "U2").disabled).toBe(false);
    expect(button(el, "U2").dataset.state).toBe("succeeded");
  });

  it("a notice (e.g. an action that could not start) shows and frees the button", () => {
    const model = fakeModel(done());
    const { el } = mount(widget, model);
    button(el, "V1").click();
    model.update({ notice: "V1: not enough credits" });
    expect(el.querySelector('.ji-line[role="status"]').textContent).toBe("V1: not enough credits");
    expect(button(el, "V1").disabled).toBe(false);
  });

  it("Cancel sends a cancel message", () => {
    const model = fakeModel(state({ status: "running", progress: 10 }));
    const { el } = mount(widget, model);
    button(el, "Cancel").click();
    expect(model.sent[0].content).toEqual({ type: "cancel" });
  });
});

describe("full-size images", () => {
  it("are requested on click and shown when the reply's buffer arrives", () => {
    const model = fakeModel(done());
    const { el } = mount(widget, model);
    el.querySelectorAll(".ji-cell")[1].click();
    expect(model.sent).toEqual([{ content: { type: "full", index: 1 }, buffers: undefined }]);
    const dialog = document.querySelector('[role="dialog"]');
    expect(dialog.getAttribute("aria-label")).toBe("Full-size image 2");
    const before = dialog.querySelector("img").src;
    model.emit({ type: "full", index: 1 }, [view([0x89, 0x50, 0x4e, 0x47])]);
    expect(dialog.querySelector("img").src).not.toBe(before);
    expect(dialog.querySelector("a").getAttribute("href")).toMatch(/^blob:/);
    button(dialog, "Close").click();
    expect(document.querySelector('[role="dialog"]')).toBeNull();
    el.querySelectorAll(".ji-cell")[1].click(); // cached: no second request
    expect(model.sent).toHaveLength(1);
  });
});

describe("thumbnails and the static fallback", () => {
  const png = (text) => `data:image/png;base64,${btoa(`\x89PNG\r\n\x1a\n....tEXtjupyter_imagine.view\0${text}....`)}`;
  /** The output area: the static fallback output, then the output holding the view's element. */
  function outputs(key) {
    const fallback = document.createElement("div");
    fallback.innerHTML = `<img src="${png(key)}">`;
    const out = document.createElement("div");
    const el = document.createElement("div");
    out.append(el);
    document.body.append(fallback, out);
    return { fallback, el };
  }

  it("asks for the thumbnails on render; the kernel's reply shows them and hides the fallback", () => {
    const model = fakeModel(done());
    model.get = ((get) => (k) => (k === "fallback_key" ? "k3y" : get(k)))(model.get);
    const { fallback, el } = outputs("k3y");
    widget.render({ model, el });
    expect(model.sent.map((m) => m.content)).toEqual([{ type: "images" }]);
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(0);
    expect(fallback.classList.contains("ji-hidden")).toBe(false);
    model.emit({ type: "images", rev: 0 }, [view(JPEG)]); // an older revision: ignored
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(0);
    model.emit({ type: "images", rev: 1 }, model.get("images"));
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(4);
    expect(el.querySelectorAll('img[alt="a lighthouse at dusk (image 3 of 4)"]')).toHaveLength(1);
    expect(fallback.classList.contains("ji-hidden")).toBe(true);
  });

  it("restored from saved widget state with no kernel: the fallback stays, the card steps aside", () => {
    vi.useFakeTimers();
    const model = fakeModel({ ...done(), fallback_key: "k3y" });
    const { fallback, el } = outputs("k3y");
    widget.render({ model, el }); // nobody answers
    const card = el.querySelector(".ji-job");
    vi.advanceTimersByTime(ORPHAN_MS - 100);
    expect(card.classList.contains("ji-hidden")).toBe(false); // a kernel may still answer
    vi.advanceTimersByTime(10_000);
    expect(fallback.classList.contains("ji-hidden")).toBe(false);
    expect(card.classList.contains("ji-hidden")).toBe(true); // its buttons would do nothing
    expect(el.querySelector(".ji-status").textContent).toMatch(/^Done/);
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(0);
    model.emit({ type: "images", rev: 1 }, model.get("images")); // a kernel after all (it was busy)
    expect(card.classList.contains("ji-hidden")).toBe(false);
    expect(fallback.classList.contains("ji-hidden")).toBe(true);
    expect(el.querySelectorAll(".ji-cell")).toHaveLength(4);
  });

  it("without a static picture beside it the card stays, kernel or not", () => {
    vi.useFakeTimers();
    const model = fakeModel({ ...done(), fallback_key: "k3y" });
    const { el } = outputs("another key");
    widget.render({ model, el });
    vi.advanceTimersByTime(10_000);
    expect(el.querySelector(".ji-job").classList.contains("ji-hidden")).toBe(false);
  });

  it("a change from the kernel while a job runs hides the fallback too", () => {
    const model = fakeModel(state({ status: "running", progress: 10, fallback_key: "k3y" }));
    const { fallback, el } = outputs("k3y");
    widget.render({ model, el });
    expect(fallback.classList.contains("ji-hidden")).toBe(false);
    model.update({ progress: 20 });
    expect(fallback.classList.contains("ji-hidden")).toBe(true);
  });
});

describe("formatting", () => {
  it("names the kind once and spells emoji-only labels", () => {
    expect(kindText("", "imagine")).toBe("imagine");
    expect(kindText("U2", "upscale")).toBe("U2 · upscale");
    expect(kindText("Vary (Region)", "vary_region")).toBe("Vary (Region)");
    expect(kindText("🔄", "reroll")).toBe("🔄 Reroll");
    expect(kindText("⬅️", "pan")).toBe("⬅️ Pan left");
    expect(buttonText("🔄")).toBe("🔄 Reroll");
    expect(buttonText("V1")).toBe("V1");
  });

  it("keeps status and Cancel together, apart from the badges; 🔄 Reroll still sends 🔄", () => {
    const { el } = mount(widget, fakeModel(state({ status: "running", kind: "vary_region", action: "Vary (Region)" })));
    const group = el.querySelector(".ji-head > .ji-state");
    expect([...group.children].map((c) => c.className)).toEqual(["ji-status", "ji-cancel"]);
    expect(el.querySelector(".ji-kind").textContent).toBe("Vary (Region)");
    const done = fakeModel(state({ status: "succeeded", actions: ["🔄"] }));
    const shown = mount(widget, done).el;
    button(shown, "🔄 Reroll").click();
    expect(done.sent.map((m) => m.content)).toEqual([{ type: "act", label: "🔄" }]);
  });


  it("elapsed and status texts", () => {
    expect(formatElapsed(4.25)).toBe("4.3 s");
    expect(formatElapsed(42)).toBe("42 s");
    expect(formatElapsed(65)).toBe("1 min 05 s");
    expect(statusText({ status: "running", progress: 39.6, queue_position: null })).toBe("Running 40%");
  });
});

describe("cost", () => {
  it("shows the expected cost, then the recorded one, and nothing when unknown", () => {
    const model = fakeModel(state({ cost: "≈ 4 credits" }));
    const { el } = mount(widget, model);
    expect(el.querySelector(".ji-cost").textContent).toBe("≈ 4 credits");
    expect(el.querySelector(".ji-cost").title).toBe("expected cost (published price)");
    model.update({ cost: "4 credits" });
    expect(el.querySelector(".ji-cost").textContent).toBe("4 credits");
    model.update({ cost: "" });
    expect(el.querySelector(".ji-cost")).toBe(null);
  });
});
