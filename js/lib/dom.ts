// DOM helpers shared by every view: elements built without innerHTML, buttons, event listeners
// removed together at teardown, and keyboard focus (inside shadow roots too).

/** An element with a class and optional test id, built without innerHTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { class?: string; testid?: string; text?: string; attrs?: Record<string, string> } = {},
  children: Array<Node | null | undefined> = [],
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.testid) el.dataset.testid = props.testid;
  if (props.text !== undefined) el.textContent = props.text;
  if (props.attrs) for (const [k, v] of Object.entries(props.attrs)) el.setAttribute(k, v);
  for (const c of children) if (c) el.appendChild(c);
  return el;
}

export function button(label: string, testid: string, cls = "lw-btn"): HTMLButtonElement {
  const b = h("button", { class: cls, testid, text: label });
  b.type = "button";
  return b;
}

/** addEventListener, with its removal added to `offs` (run at destroy / dispose). */
export function listen<K extends keyof HTMLElementEventMap>(
  offs: Array<() => void>,
  target: HTMLElement | Window | Document,
  type: K,
  fn: (ev: HTMLElementEventMap[K]) => void,
  opts?: AddEventListenerOptions,
): void {
  target.addEventListener(type, fn as EventListener, opts);
  offs.push(() => target.removeEventListener(type, fn as EventListener, opts));
}

/** True while `el` has the keyboard focus (activeElement of its root: the document, or marimo's shadow root). */
export function hasFocus(el: Element): boolean {
  return (el.getRootNode() as Document | ShadowRoot).activeElement === el;
}
