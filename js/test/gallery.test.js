import { afterEach, describe, expect, it } from "vitest";
import widget, { filterRows } from "../gallery.js";
import { fakeModel, mount, view } from "./fake_model.js";

const rows = [
  { id: "a1", provider: "apiframe", kind: "imagine", status: "succeeded", prompt: "a lighthouse at dusk", created: "2024-05-01T12:00:00+00:00", n_images: 4, sandbox: true },
  { id: "b2", provider: "apiframe", kind: "upscale", status: "failed", prompt: "a red fox in snow", created: "2024-05-01T11:00:00+00:00", n_images: 0, sandbox: true },
  { id: "c3", provider: "blockade", kind: "skybox", status: "succeeded", prompt: "alien desert at night", created: "2024-05-01T10:00:00+00:00", n_images: 1, sandbox: true },
];

afterEach(() => document.body.replaceChildren());

describe("gallery", () => {
  it("filters by provider, status and words of the prompt", () => {
    expect(filterRows(rows, { provider: "apiframe" }).map((r) => r.id)).toEqual(["a1", "b2"]);
    expect(filterRows(rows, { status: "succeeded" }).map((r) => r.id)).toEqual(["a1", "c3"]);
    expect(filterRows(rows, { text: "DUSK lighthouse" }).map((r) => r.id)).toEqual(["a1"]);
    expect(filterRows(rows, { text: "b2" }).map((r) => r.id)).toEqual(["b2"]);
    const team = rows.map((r, i) => ({ ...r, user: i ? "bea" : "ann", host: "hub" }));
    expect(filterRows(team, { user: "bea" }).map((r) => r.id)).toEqual(["b2", "c3"]);
  });

  it("says whose each job is only when several people's jobs are shown", () => {
    const solo = rows.map((r) => ({ ...r, user: "ann", host: "laptop" }));
    const one = mount(widget, fakeModel({ rows: solo, total: 3, selected: "", fallback_key: "" })).el;
    expect(one.querySelector('select[aria-label="Made by"]').classList.contains("ji-hidden")).toBe(true);
    expect(one.querySelector(".ji-tile .ji-meta").textContent).toBe("imagine · apiframe");
    document.body.replaceChildren();
    const team = rows.map((r, i) => ({ ...r, user: i ? "bea" : "ann", host: "hub" }));
    const el = mount(widget, fakeModel({ rows: team, total: 3, selected: "", fallback_key: "" })).el;
    const who = el.querySelector('select[aria-label="Made by"]');
    expect(who.classList.contains("ji-hidden")).toBe(false);
    expect([...who.options].map((o) => o.value)).toEqual(["", "ann", "bea"]);
    expect(el.querySelector(".ji-tile .ji-meta").textContent).toBe("imagine · apiframe · ann");
    expect(el.querySelector(".ji-tile").title).toContain("· ann@hub");
    who.value = "bea";
    who.dispatchEvent(new Event("change"));
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(2);
  });

  it("keeps its static picture in sight until the kernel answers (none: restored from saved state)", () => {
    const fallback = document.createElement("div");
    fallback.innerHTML = `<img src="data:image/jpeg;base64,${btoa("\xff\xd8..jupyter_imagine.view\0g4l....")}">`;
    const el = document.createElement("div");
    document.body.append(fallback, el);
    const model = fakeModel({ rows, total: 3, selected: "", fallback_key: "g4l" });
    widget.render({ model, el });
    expect(fallback.classList.contains("ji-hidden")).toBe(false);
    model.emit({ type: "thumbs", ids: ["a1"] }, [view([0xff, 0xd8])]);
    expect(fallback.classList.contains("ji-hidden")).toBe(true);
  });

  it("renders tiles, filters them live, asks for thumbnails and opens a job on click", () => {
    const model = fakeModel({ rows, total: 3, selected: "", fallback_key: "" });
    const { el } = mount(widget, model);
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(3);
    expect(el.querySelector(".ji-count").textContent).toBe("3 jobs");
    expect(model.sent[0].content).toEqual({ type: "thumbs", ids: ["a1", "b2", "c3"] });
    model.emit({ type: "thumbs", ids: ["a1", "b2", "c3"] }, [view([0xff, 0xd8]), new DataView(new ArrayBuffer(0)), view([0x89, 0x50])]);
    const boxes = el.querySelectorAll(".ji-tile .ji-thumb");
    expect(boxes[0].querySelector("img").getAttribute("src")).toMatch(/^blob:/);
    expect(boxes[0].querySelector("img").alt).toBe("a lighthouse at dusk");
    expect(boxes[1].querySelector("img")).toBeNull();
    expect(boxes[1].textContent).toBe("failed"); // no picture: says why
    expect(boxes[2].querySelector("img").getAttribute("src")).toMatch(/^blob:/);
    const search = el.querySelector('input[aria-label="Search prompts"]');
    search.value = "fox";
    search.dispatchEvent(new Event("input"));
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(1);
    expect(el.querySelector(".ji-count").textContent).toBe("1 job");
    search.value = "";
    search.dispatchEvent(new Event("input"));
    const provider = el.querySelector('select[aria-label="Provider"]');
    expect([...provider.options].map((o) => o.value)).toEqual(["", "apiframe", "blockade"]);
    provider.value = "blockade";
    provider.dispatchEvent(new Event("change"));
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(1);
    el.querySelector(".ji-tile").click();
    expect(model.sent.at(-1).content).toEqual({ type: "open", id: "c3" });
    model.update({ selected: "c3" });
    expect(el.querySelector(".ji-tile").getAttribute("aria-current")).toBe("true");
  });

  it("says when it holds only the newest rows, and pages long lists", () => {
    const many = Array.from({ length: 60 }, (_, i) => ({ ...rows[0], id: `id${i}` }));
    const model = fakeModel({ rows: many, total: 5000, selected: "", fallback_key: "" });
    const { el } = mount(widget, model);
    expect(el.querySelector(".ji-count").textContent).toBe("60 jobs (newest 60 of 5000)");
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(48);
    el.querySelector(".ji-more").click();
    expect(el.querySelectorAll(".ji-tile")).toHaveLength(60);
  });
});
