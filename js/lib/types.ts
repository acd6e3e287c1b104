// The slice of anywidget's model API that the views use (anywidget 0.11, JupyterLab and marimo).
// Declared here so the bundle needs no runtime or type dependency on anywidget.

export type Callback = (...args: any[]) => void;

export interface AnyModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, callback: Callback): void;
  off(event?: string | null, callback?: Callback | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
  signal?: AbortSignal;
}

/** Common traits on every widget (docs/protocol.md). */
export interface ErrorInfo {
  kind: string;
  message: string;
  details?: Record<string, unknown>;
}
