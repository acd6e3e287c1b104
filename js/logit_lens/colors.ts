// The colours of the logit-lens table for a theme: the sequential "blues" scale cells are shaded
// by, its 256 fills as CSS strings with the text colour that contrasts with each, and the colour of
// a cell with nothing to shade (NaN). Built once per palette; painting and exports only look up.

import type { ColorScale, RGB } from "../lib/colors";
import { MISSING, contrastText, rgbCss, sequential } from "../lib/colors";
import type { Palette } from "../lib/theme";

export interface LensColors {
  scale: ColorScale;
  /** Per LUT index (0..255): the cell fill and the text colour that contrasts with it. */
  fillLut: string[];
  textLut: string[];
  missingCss: string;
}

/** The colours before a palette is set (empty LUTs: fills fall back to `scale.css`). */
export function defaultLensColors(): LensColors {
  return { scale: sequential("light"), fillLut: [], textLut: [], missingCss: rgbCss(MISSING.light) };
}

/** The colours for palette `p`. */
export function lensColors(p: Palette): LensColors {
  const scale = sequential(p.theme, [0, 1], "blues");
  const fillLut: string[] = [];
  const textLut: string[] = [];
  for (let i = 0; i < 256; i++) {
    const rgb: RGB = [scale.lut[i * 4], scale.lut[i * 4 + 1], scale.lut[i * 4 + 2]];
    fillLut.push(rgbCss(rgb));
    textLut.push(contrastText(rgb));
  }
  return { scale, fillLut, textLut, missingCss: rgbCss(MISSING[p.theme]) };
}

/** The fill of shade value `v` (the missing colour for NaN). */
export function lensCellFill(c: LensColors, v: number): string {
  const i = c.scale.lutIndex(v);
  return i < 0 ? c.missingCss : c.fillLut[i] ?? c.scale.css(v);
}
