// Builds one self-contained, minified ES module per widget entry (js/*.ts) into
// src/lenswidget/static/, plus the one shared stylesheet. `--watch` rebuilds on change.
import * as esbuild from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "src", "lenswidget", "static");
const watch = process.argv.includes("--watch");

// Every top-level js/*.ts is a widget entry (attention.ts -> attention.js, ...).
const entries = readdirSync(join(root, "js"))
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
  .sort()
  .map((f) => join(root, "js", f));

const common = {
  bundle: true,
  minify: !watch,
  legalComments: "none",
  logLevel: "info",
  charset: "utf8",
  metafile: true,
};

// Each bundle must be one self-contained module: no imports left (no CDN, no bare specifiers).
function checkSelfContained(result) {
  for (const [file, out] of Object.entries(result.metafile.outputs)) {
    if (out.imports.length) {
      const list = out.imports.map((i) => i.path).join(", ");
      throw new Error(`${file} is not self-contained: it imports ${list}`);
    }
  }
}

const builds = [
  {
    ...common,
    entryPoints: entries,
    outdir,
    format: "esm",
    target: "es2020",
    platform: "browser",
    sourcemap: watch ? "inline" : false,
  },
  {
    ...common,
    entryPoints: { lenswidget: join(root, "js", "lib", "styles.css") },
    outdir,
    target: ["chrome100", "firefox100", "safari15"],
  },
];

if (watch) {
  const ctxs = await Promise.all(builds.map((b) => esbuild.context(b)));
  await Promise.all(ctxs.map((c) => c.watch()));
} else {
  const results = await Promise.all(builds.map((b) => esbuild.build(b)));
  results.forEach(checkSelfContained);
}
