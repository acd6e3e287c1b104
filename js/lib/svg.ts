// Small helpers for self-contained SVG export (no external fonts, images inlined as data URLs).

import type { ColorScale } from "./colors";

const XML_ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };

/** Escape text for XML content and attribute values; drops characters XML 1.0 forbids. */
export function escapeXml(s: string): string {
  return String(s)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "\ufffd")
    .replace(/[&<>"']/g, (c) => XML_ESC[c]);
}

/** Round to 2 decimals for compact coordinates. */
export function r2(x: number): string {
  return String(Math.round(x * 100) / 100);
}

/** `text` cut to at most `max` characters, ending in "…" when cut (export titles). */
export function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}…` : text;
}

export const SVG_FONT = "Helvetica, Arial, sans-serif";

export function svgDocument(width: number, height: number, body: string[], bg = "#ffffff"): string {
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" ` +
      `width="${r2(width)}" height="${r2(height)}" viewBox="0 0 ${r2(width)} ${r2(height)}" ` +
      `font-family="${SVG_FONT}">`,
    `<rect width="100%" height="100%" fill="${escapeXml(bg)}"/>`,
    ...body,
    `</svg>`,
  ].join("\n");
}

/** A horizontal colour legend (gradient bar with min / max labels) at (x, y). */
export function svgLegend(
  scale: ColorScale,
  x: number,
  y: number,
  width: number,
  label: string,
  fg: string,
  idSuffix = "0",
): string[] {
  const id = `lw-grad-${idSuffix}`;
  const stops: string[] = [];
  for (let i = 0; i <= 8; i++) {
    const v = scale.domain[0] + ((scale.domain[1] - scale.domain[0]) * i) / 8;
    stops.push(`<stop offset="${(i / 8).toFixed(3)}" stop-color="${scale.css(v)}"/>`);
  }
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  return [
    `<defs><linearGradient id="${id}" x1="0" x2="1" y1="0" y2="0">${stops.join("")}</linearGradient></defs>`,
    `<rect x="${r2(x)}" y="${r2(y)}" width="${r2(width)}" height="10" fill="url(#${id})" stroke="${escapeXml(fg)}" stroke-width="0.5"/>`,
    `<text x="${r2(x)}" y="${r2(y + 22)}" font-size="10" fill="${escapeXml(fg)}">${escapeXml(fmt(scale.domain[0]))}</text>`,
    `<text x="${r2(x + width)}" y="${r2(y + 22)}" font-size="10" text-anchor="end" fill="${escapeXml(fg)}">${escapeXml(fmt(scale.domain[1]))}</text>`,
    `<text x="${r2(x + width / 2)}" y="${r2(y + 22)}" font-size="10" text-anchor="middle" fill="${escapeXml(fg)}">${escapeXml(label)}</text>`,
  ];
}
