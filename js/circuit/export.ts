// Export of the CircuitGraph view: the graph and the faithfulness curve side by side in one
// self-contained SVG (no classes, no external fonts: every colour is an attribute), under a title
// naming the size, method, prompts and metric. Click targets (the wide transparent hit paths) are
// left out. The PNG is this SVG rasterised (lib/raster.ts), so both show the same thing.

import { escapeXml, r2, svgDocument } from "../lib/svg";
import type { Palette } from "../lib/theme";

function inner(svg: SVGSVGElement): string {
  const clone = svg.cloneNode(true) as SVGSVGElement;
  clone.querySelectorAll(".lw-ci-hit").forEach((e) => e.remove());
  const ser = new (svg.ownerDocument.defaultView as unknown as { XMLSerializer: typeof XMLSerializer }).XMLSerializer();
  return [...clone.childNodes].map((n) => ser.serializeToString(n)).join("\n");
}

const num = (svg: SVGSVGElement, name: string) => Number(svg.getAttribute(name)) || 0;

/** One SVG document: `header` lines, then the graph, then the curve to its right. */
export function circuitSVG(graph: SVGSVGElement, curve: SVGSVGElement, header: string[], p: Palette): string {
  const top = 12 + 16 * header.length;
  const gw = num(graph, "width");
  const gh = num(graph, "height");
  const cw = num(curve, "width");
  const ch = num(curve, "height");
  const body = header.map(
    (line, i) =>
      `<text x="8" y="${r2(20 + 16 * i)}" font-size="${i === 0 ? 13 : 11}" fill="${escapeXml(i === 0 ? p.fg : p.muted)}"${i === 0 ? ' font-weight="bold"' : ""} xml:space="preserve">${escapeXml(line)}</text>`,
  );
  body.push(`<g transform="translate(0,${r2(top)})">${inner(graph)}</g>`);
  body.push(`<g transform="translate(${r2(gw + 16)},${r2(top)})">${inner(curve)}</g>`);
  const longest = Math.max(0, ...header.map((s) => s.length * 6.6));
  return svgDocument(Math.ceil(Math.max(gw + 16 + cw + 8, longest + 16)), Math.ceil(top + Math.max(gh, ch) + 8), body, p.bg);
}
