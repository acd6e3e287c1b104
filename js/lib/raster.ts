// Rasterise a self-contained SVG string into a PNG blob (for "Export PNG" of views whose labels
// are DOM or SVG text rather than canvas pixels). The SVG is loaded as an image from a data URL
// (no network, no blob URL to revoke) and drawn onto a canvas at `scale` x its size.

/** Width and height in CSS px from the root <svg>'s width/height attributes (0 when absent). */
export function svgSize(svg: string): { width: number; height: number } {
  const m = /<svg\b[^>]*>/.exec(svg);
  const tag = m ? m[0] : "";
  const attr = (name: string) => {
    const a = new RegExp(`\\s${name}="([0-9.]+)"`).exec(tag);
    return a ? Number(a[1]) : 0;
  };
  return { width: attr("width"), height: attr("height") };
}

/**
 * The SVG as a PNG blob at `scale` device px per CSS px, or null where the browser cannot
 * (no 2D canvas, the image does not load within `timeoutMs`, or the canvas is tainted).
 */
export function svgToPNG(svg: string, scale = 2, timeoutMs = 10_000, doc: Document = document): Promise<Blob | null> {
  const { width, height } = svgSize(svg);
  return new Promise((resolve) => {
    if (!(width > 0 && height > 0)) return resolve(null);
    const win = doc.defaultView as (Window & typeof globalThis) | null;
    const ImageCtor = win?.Image ?? (typeof Image !== "undefined" ? Image : null);
    if (!ImageCtor) return resolve(null);
    let done = false;
    const finish = (b: Blob | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(b);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    const img = new ImageCtor();
    img.onload = () => {
      try {
        const c = doc.createElement("canvas");
        c.width = Math.max(1, Math.round(width * scale));
        c.height = Math.max(1, Math.round(height * scale));
        const ctx = c.getContext("2d");
        if (!ctx || typeof c.toBlob !== "function") return finish(null);
        ctx.drawImage(img, 0, 0, c.width, c.height);
        c.toBlob((b) => finish(b), "image/png");
      } catch {
        finish(null);
      }
    };
    img.onerror = () => finish(null);
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
  });
}
