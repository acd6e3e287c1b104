import { describe, expect, it, vi } from "vitest";
import { RequestError, createClient, defaultNewId, toErrorInfo } from "../lib/protocol";
import { FakeModel, last } from "./helpers";

function ids() {
  let n = 0;
  return () => `r${++n}`;
}

describe("createClient", () => {
  it("sends {type: request, id, kind, args} with ids r1, r2, ...", () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    void c.request("run", { prompt: "hi" });
    void c.request("clear");
    expect(m.requests()).toEqual([
      { type: "request", id: "r1", kind: "run", args: { prompt: "hi" } },
      { type: "request", id: "r2", kind: "clear", args: {} },
    ]);
    expect(c.pending()).toEqual([
      { id: "r1", kind: "run" },
      { id: "r2", kind: "clear" },
    ]);
  });

  it("the default id source is shared and increasing", () => {
    const a = Number(defaultNewId().slice(1));
    const b = Number(defaultNewId().slice(1));
    expect(b).toBe(a + 1);
  });

  it("resolves each request by its own id, with buffers", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const p1 = c.request("a");
    const p2 = c.request("b");
    const buf = new DataView(new ArrayBuffer(4));
    m.receive({ type: "reply", id: "r2", ok: true, result: { x: 2 } }, [buf]);
    m.receive({ type: "reply", id: "r1", ok: true, result: { x: 1 } });
    await expect(p2).resolves.toEqual({ result: { x: 2 }, buffers: [buf] });
    await expect(p1).resolves.toEqual({ result: { x: 1 }, buffers: [] });
    expect(c.pending()).toEqual([]);
  });

  it("rejects with a RequestError carrying kind, message and details", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const p = c.request("ablate", { layer: 99 });
    m.receive({
      type: "reply",
      id: "r1",
      ok: false,
      error: { kind: "input", message: "layer 99 is out of range", details: { n_layers: 2 } },
    });
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect(err).toBeInstanceOf(Error);
    expect(err.kind).toBe("input");
    expect(err.message).toBe("layer 99 is out of range");
    expect(err.details).toEqual({ n_layers: 2 });
    expect(err.id).toBe("r1");
    expect(err.requestKind).toBe("ablate");
  });

  it("rejects with a generic error when the error object is missing", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const p = c.request("x");
    m.receive({ type: "reply", id: "r1", ok: false });
    await expect(p).rejects.toMatchObject({ kind: "error", message: "The request failed." });
  });

  it("calls onProgress for progress messages of its request only", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const onProgress = vi.fn();
    const p = c.request("sweep", {}, { onProgress });
    m.receive({ type: "progress", id: "r1", done: 3, total: 10, message: "resid_pre" });
    m.receive({ type: "progress", id: "r9", done: 1, total: 2 });
    m.receive({ type: "progress", id: "r1", done: "junk" });
    expect(onProgress).toHaveBeenCalledTimes(2);
    expect(onProgress.mock.calls[0][0]).toEqual({ id: "r1", kind: "sweep", done: 3, total: 10, message: "resid_pre" });
    expect(onProgress.mock.calls[1][0]).toMatchObject({ done: 0, total: 0, message: "" });
    m.receive({ type: "reply", id: "r1", ok: true, result: {} });
    await p;
  });

  it("cancel(id) sends {type: cancel, id}; the request settles on the reply", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const p = c.request("sweep");
    c.cancel("r1");
    expect(last(m.sent)!.content).toEqual({ type: "cancel", id: "r1" });
    c.cancel("nope");
    expect(m.sent.length).toBe(2);
    m.receive({ type: "reply", id: "r1", ok: false, error: { kind: "cancelled", message: "Cancelled." } });
    await expect(p).rejects.toMatchObject({ kind: "cancelled" });
    c.cancel("r1"); // already settled: nothing sent
    expect(m.sent.length).toBe(2);
  });

  it("an AbortSignal cancels", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const ac = new AbortController();
    const p = c.request("sweep", {}, { signal: ac.signal });
    ac.abort();
    expect(last(m.sent)!.content).toEqual({ type: "cancel", id: "r1" });
    m.receive({ type: "reply", id: "r1", ok: false, error: { kind: "cancelled", message: "Cancelled." } });
    await expect(p).rejects.toMatchObject({ kind: "cancelled" });
  });

  it("ignores replies with unknown ids and malformed messages", async () => {
    const m = new FakeModel();
    const onUnmatched = vi.fn();
    const c = createClient(m, { newId: ids(), onUnmatched });
    const p = c.request("run");
    const junk: unknown[] = [
      null,
      undefined,
      42,
      "reply",
      [],
      { id: "r1" },
      { type: 7, id: "r1" },
      { type: "reply", id: "r2", ok: true },
      { type: "reply", id: 1, ok: true },
      { type: "reply", id: null, ok: false, error: { kind: "protocol", message: "no id" } },
      { type: "something", id: "r1" },
    ];
    for (const j of junk) expect(() => m.receive(j)).not.toThrow();
    expect(onUnmatched).toHaveBeenCalledTimes(junk.length);
    expect(c.pending()).toEqual([{ id: "r1", kind: "run" }]);
    m.receive({ type: "reply", id: "r1", ok: true });
    await expect(p).resolves.toEqual({ result: {}, buffers: [] });
  });

  it("a second reply for the same id is ignored", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    const p = c.request("run");
    m.receive({ type: "reply", id: "r1", ok: true, result: 1 });
    m.receive({ type: "reply", id: "r1", ok: false, error: { kind: "x", message: "late" } });
    await expect(p).resolves.toMatchObject({ result: 1 });
  });

  it("reports pending changes", () => {
    const m = new FakeModel();
    const onPendingChange = vi.fn();
    const c = createClient(m, { newId: ids(), onPendingChange });
    void c.request("run");
    expect(onPendingChange).toHaveBeenLastCalledWith([{ id: "r1", kind: "run" }]);
    m.receive({ type: "reply", id: "r1", ok: true });
    expect(onPendingChange).toHaveBeenLastCalledWith([]);
  });

  it("dispose removes its listener and rejects open requests", async () => {
    const m = new FakeModel();
    const c = createClient(m, { newId: ids() });
    expect(m.listenerCount("msg:custom")).toBe(1);
    const p = c.request("run");
    c.dispose();
    expect(m.listenerCount("msg:custom")).toBe(0);
    await expect(p).rejects.toMatchObject({ kind: "disposed" });
    await expect(c.request("run")).rejects.toMatchObject({ kind: "disposed" });
    expect(m.requests().length).toBe(1);
  });

  it("two clients on one model do not answer each other's requests", async () => {
    const m = new FakeModel();
    const a = createClient(m);
    const b = createClient(m);
    const pa = a.request("run");
    const pb = b.request("run");
    const [ra, rb] = m.requests();
    expect(ra.id).not.toBe(rb.id);
    m.receive({ type: "reply", id: rb.id, ok: true, result: "b" });
    await expect(pb).resolves.toMatchObject({ result: "b" });
    expect(a.pending().length).toBe(1);
    m.receive({ type: "reply", id: ra.id, ok: true, result: "a" });
    await expect(pa).resolves.toMatchObject({ result: "a" });
  });

  it("a send that throws rejects with a transport error", async () => {
    const m = new FakeModel();
    m.send = () => {
      throw new Error("comm closed");
    };
    const c = createClient(m, { newId: ids() });
    await expect(c.request("run")).rejects.toMatchObject({ kind: "transport" });
    expect(c.pending()).toEqual([]);
  });
});

describe("toErrorInfo", () => {
  it("normalises junk", () => {
    expect(toErrorInfo({ kind: "input", message: "m" })).toEqual({ kind: "input", message: "m", details: {} });
    expect(toErrorInfo("boom")).toEqual({ kind: "error", message: "boom", details: {} });
    expect(toErrorInfo(null).message).toBe("The request failed.");
    expect(toErrorInfo({ kind: 3, message: [], details: "x" })).toEqual({ kind: "error", message: "The request failed.", details: {} });
  });
});
