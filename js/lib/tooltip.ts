// Placing the views' hover tooltips (.lw-tooltip, absolutely positioned in their container).

import type { Rect } from "./canvas";

/**
 * Put `tip` beside `anchor` (a rectangle in its container's CSS px): `gap` px to the right, or to
 * the left when it would overflow `room` px there and fits on the left. `fallbackW` is the width
 * assumed before the tooltip has been laid out.
 */
export function placeTooltip(tip: HTMLElement, anchor: Rect, room: number, gap: number, fallbackW: number): void {
  const tipW = tip.offsetWidth || fallbackW;
  let left = anchor.x + anchor.w + gap;
  if (left + tipW > room && anchor.x - tipW - gap >= 0) left = anchor.x - tipW - gap;
  tip.style.left = `${Math.round(left)}px`;
  tip.style.top = `${Math.round(anchor.y)}px`;
}
