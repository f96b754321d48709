// Bundle one entry file with esbuild from these pinned packages, for a test.
// Usage: node build_bundle.mjs <entry> <outfile> <browser|node>. Prints {"outfile": ...}.
// Browser bundles are an IIFE (a classic script: it also runs when injected into a page);
// Node bundles are ES modules.
import { build } from 'esbuild';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [entry, outfile, platform] = process.argv.slice(2);
const here = fileURLToPath(new URL('.', import.meta.url));
await build({
  entryPoints: [entry],
  bundle: true,
  outfile,
  platform,
  format: platform === 'node' ? 'esm' : 'iife',
  target: platform === 'node' ? 'node18' : 'es2022',
  jsx: 'automatic',
  nodePaths: [join(here, 'node_modules')],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
console.log(JSON.stringify({ outfile }));
