// Which 2-D slice of one site's N-d result map its card shows: the geometry (dims and shape), the
// axes drawn as rows and columns (data.ts chooseAxes), the index fixed on every other axis, and
// the selected cell. New geometry resets the fixed axes; the first values then fix them where the
// effect is largest (once); a pick in a slice select, or a selected cell in another slice, moves
// them. No DOM: site.ts draws what this says.

import type { Cell } from "../lib/heatmap";
import { sameStrings } from "./cardtypes";
import type { Axes, SiteEntry } from "./data";
import { argmaxAbs, axisLabels, cellIndex, chooseAxes, extractSlice, gridSize, isPosDim } from "./data";

export class Slicing {
  dims: string[] = [];
  shape: number[] = [];
  axes: Axes = { row: -1, col: -1, extra: [] };
  /** An index on every axis; those of the extra axes fix the slice. */
  fixed: number[] = [];
  /** "" until the extra axes are fixed; "auto" (the largest effect) or "user" (a pick) after. */
  private fixedBy = "";
  private selected: number[] | null = null;
  private selectedKey = "";

  /** New dims / shape; returns true when they changed (axes and fixed slice reset). */
  setGeometry(dims: string[], shape: number[]): boolean {
    const changed = !sameStrings(dims, this.dims) || !sameStrings(shape.map(String), this.shape.map(String));
    this.dims = [...dims];
    this.shape = [...shape];
    if (changed) {
      this.axes = chooseAxes(this.dims);
      this.fixed = this.shape.map(() => 0);
      this.fixedBy = "";
      this.selectedKey = "";
    }
    return changed;
  }

  /** First values for this geometry (full map, dims order): show the slice with the largest effect. */
  autoFix(values: ArrayLike<number>): void {
    if (!this.fixedBy && this.axes.extra.length && values.length) {
      const best = argmaxAbs(values, this.shape);
      for (const i of this.axes.extra) this.fixed[i] = best[i];
      this.fixedBy = "auto";
    }
  }

  /** The user picked index `k` on axis `i`. */
  pick(i: number, k: number): void {
    this.fixed[i] = k;
    this.fixedBy = "user";
  }

  /** The selected cell (full index in dims order; null or outside the shape: none). Returns true
   * when it is new and in another slice, which is then the one shown. */
  select(index: number[] | null): boolean {
    const ok = !!index && index.length === this.shape.length && index.every((v, i) => Number.isInteger(v) && v >= 0 && v < this.shape[i]);
    this.selected = ok ? [...index!] : null;
    const key = ok ? index!.join(",") : "";
    if (key === this.selectedKey) return false;
    this.selectedKey = key;
    if (!ok || !this.axes.extra.some((i) => this.fixed[i] !== index![i])) return false;
    for (const i of this.axes.extra) this.fixed[i] = index![i];
    this.fixedBy = "user";
    return true;
  }

  /** The selected cell as (row, col) of the slice shown, or null (none, or in another slice). */
  selectedCell(): Cell | null {
    const s = this.selected;
    if (!s || this.axes.extra.some((i) => s[i] !== this.fixed[i])) return null;
    return { row: this.axes.row >= 0 ? s[this.axes.row] : 0, col: this.axes.col >= 0 ? s[this.axes.col] : 0 };
  }

  /** Full index (dims order) of cell (row, col) of the slice shown. */
  indexOf(row: number, col: number): number[] {
    return cellIndex(this.shape, this.axes, this.fixed, row, col);
  }

  /** Rows and columns of the slice. */
  size(): { rows: number; cols: number } {
    return gridSize(this.shape, this.axes);
  }

  /** The name of axis `axis` ("" for none, -1). */
  dim(axis: number): string {
    return axis >= 0 ? this.dims[axis] : "";
  }

  /** Whether the columns are token positions. */
  colIsPos(): boolean {
    return this.axes.col >= 0 && isPosDim(this.dims[this.axes.col]);
  }

  /** The slice shown of a full map (dims order), row-major. */
  extract(values: ArrayLike<number>): Float32Array {
    return extractSlice(values, this.shape, this.axes, this.fixed);
  }

  /** The fixed axes by name, e.g. {head: 2}. */
  fixedAxes(): Record<string, number> {
    const slice: Record<string, number> = {};
    for (const i of this.axes.extra) slice[this.dims[i]] = this.fixed[i];
    return slice;
  }

  /** The fixed axes as text, e.g. "head L1H2" (labels as in the slice selects), or "". */
  text(p: SiteEntry | null, tokens: string[]): string {
    return this.axes.extra.map((i) => `${this.dims[i]} ${axisLabels(this.dims[i], this.shape[i], p, tokens)[this.fixed[i]]}`).join(", ");
  }
}
