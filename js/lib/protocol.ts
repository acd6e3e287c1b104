// Request/reply over anywidget custom messages (docs/protocol.md, section 2).
//
//   view -> Python  {type: "request", id, kind, args}   {type: "cancel", id}
//   Python -> view  {type: "progress", id, done, total, message}
//                   {type: "reply", id, ok: true, result}  (+ binary buffers)
//                   {type: "reply", id, ok: false, error: {kind, message, details}}
//
// A map of open requests by id; every reply settles the request with the same id. Messages that
// are not for an open request (unknown id, id null, junk) are ignored, or passed to `onUnmatched`.
// anywidget's experimental `invoke` is not used (3 s timeout, absent in marimo).

import { isObject } from "./json";
import type { AnyModel, ErrorInfo } from "./types";

export interface Progress {
  id: string;
  kind: string;
  done: number;
  total: number;
  message: string;
}

export interface Reply<R = any> {
  result: R;
  buffers: DataView[];
}

export interface RequestOptions {
  onProgress?: (p: Progress) => void;
  /** Aborting sends `{type: "cancel", id}`; the request settles when Python replies. */
  signal?: AbortSignal;
}

/** A failed request: `kind` is the error kind from Python ("input", "protocol", "cancelled", ...). */
export class RequestError extends Error implements ErrorInfo {
  readonly kind: string;
  readonly details: Record<string, unknown>;
  /** The request id, and the request kind ("run", "ablate", ...). */
  readonly id: string | null;
  readonly requestKind: string;

  constructor(info: ErrorInfo, id: string | null = null, requestKind = "") {
    super(info.message);
    this.name = "RequestError";
    this.kind = info.kind;
    this.details = info.details ?? {};
    this.id = id;
    this.requestKind = requestKind;
  }
}

/** `e` (what a request rejected with) as a RequestError: itself, or a generic one for request `requestKind`. */
export function asRequestError(e: unknown, requestKind: string): RequestError {
  return e instanceof RequestError ? e : new RequestError(toErrorInfo(String(e)), null, requestKind);
}

export interface RequestHandle {
  id: string;
  kind: string;
}

export interface Client {
  /** Send a request; resolves with the reply's result and buffers, rejects with a RequestError. */
  request<R = any>(kind: string, args?: Record<string, unknown>, opts?: RequestOptions): Promise<Reply<R>>;
  /** Ask Python to cancel an open request (no-op for an unknown id). */
  cancel(id: string): void;
  /** The open requests, oldest first. */
  pending(): RequestHandle[];
  /** Stop listening; open requests reject with kind "disposed". */
  dispose(): void;
}

export interface ClientOptions {
  /** Id source; the default is shared by every client in this bundle: r1, r2, ... */
  newId?: () => string;
  /** Called with messages that are not for an open request (e.g. an error reply with id null). */
  onUnmatched?: (msg: unknown) => void;
  /** Called whenever the set of open requests changes. */
  onPendingChange?: (open: RequestHandle[]) => void;
}

interface Open {
  kind: string;
  resolve: (r: Reply) => void;
  reject: (e: RequestError) => void;
  onProgress?: (p: Progress) => void;
  cleanup: () => void;
}

let counter = 0;
/** A per-page prefix, so a reloaded page never reuses the id of a request the kernel still runs. */
const pagePrefix = Math.random().toString(36).slice(2, 8);
/** Ids unique within the page, so two views of one model never share an id. */
export const defaultNewId = (): string => `${pagePrefix}-r${++counter}`;

function num(x: unknown, fallback: number): number {
  return typeof x === "number" && Number.isFinite(x) ? x : fallback;
}

/** Normalise whatever Python put in `error` into {kind, message, details}. */
export function toErrorInfo(x: unknown): ErrorInfo {
  if (isObject(x)) {
    return {
      kind: typeof x.kind === "string" && x.kind ? x.kind : "error",
      message: typeof x.message === "string" && x.message ? x.message : "The request failed.",
      details: isObject(x.details) ? x.details : {},
    };
  }
  if (typeof x === "string" && x) return { kind: "error", message: x, details: {} };
  return { kind: "error", message: "The request failed.", details: {} };
}

export function createClient(model: AnyModel, options: ClientOptions = {}): Client {
  const newId = options.newId ?? defaultNewId;
  const open = new Map<string, Open>();
  let disposed = false;

  const notify = () => options.onPendingChange?.(pendingList());
  const pendingList = (): RequestHandle[] => [...open].map(([id, o]) => ({ id, kind: o.kind }));

  function settle(id: string): Open | undefined {
    const o = open.get(id);
    if (!o) return undefined;
    open.delete(id);
    o.cleanup();
    notify();
    return o;
  }

  function onMessage(msg: unknown, buffers?: unknown): void {
    if (!isObject(msg) || typeof msg.type !== "string") return options.onUnmatched?.(msg);
    const id = msg.id;
    if (typeof id !== "string" || !open.has(id)) return options.onUnmatched?.(msg);
    if (msg.type === "progress") {
      const o = open.get(id)!;
      o.onProgress?.({
        id,
        kind: o.kind,
        done: num(msg.done, 0),
        total: num(msg.total, 0),
        message: typeof msg.message === "string" ? msg.message : "",
      });
      return;
    }
    if (msg.type !== "reply") return options.onUnmatched?.(msg);
    const o = settle(id)!;
    if (msg.ok === true) {
      o.resolve({ result: msg.result ?? {}, buffers: Array.isArray(buffers) ? buffers : [] });
    } else {
      o.reject(new RequestError(toErrorInfo(msg.error), id, o.kind));
    }
  }

  model.on("msg:custom", onMessage);

  function cancel(id: string): void {
    if (disposed || !open.has(id)) return;
    model.send({ type: "cancel", id });
  }

  function request<R = any>(
    kind: string,
    args: Record<string, unknown> = {},
    opts: RequestOptions = {},
  ): Promise<Reply<R>> {
    if (disposed) {
      return Promise.reject(new RequestError({ kind: "disposed", message: "The view was closed." }, null, kind));
    }
    const id = newId();
    return new Promise<Reply<R>>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = () => cancel(id);
      open.set(id, {
        kind,
        resolve: resolve as (r: Reply) => void,
        reject,
        onProgress: opts.onProgress,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      });
      notify();
      try {
        model.send({ type: "request", id, kind, args });
      } catch (e) {
        settle(id);
        reject(new RequestError({ kind: "transport", message: `Could not send the request: ${String(e)}` }, id, kind));
        return;
      }
      if (signal) {
        if (signal.aborted) onAbort();
        else signal.addEventListener("abort", onAbort);
      }
    });
  }

  function dispose(): void {
    if (disposed) return;
    disposed = true;
    model.off("msg:custom", onMessage);
    for (const id of [...open.keys()]) {
      const o = settle(id)!;
      o.reject(new RequestError({ kind: "disposed", message: "The view was closed." }, id, o.kind));
    }
  }

  return { request, cancel, pending: pendingList, dispose };
}
