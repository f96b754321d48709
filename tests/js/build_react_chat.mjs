// Build examples/react-chat with esbuild for the browser test, from these pinned packages
// (the example's own node_modules when `npm ci` ran there, else tests/js's).
// Usage: node build_react_chat.mjs <example dir> <out dir>. Prints {"files": [...]}.
import { build } from 'esbuild';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [example, outdir] = process.argv.slice(2);
const here = fileURLToPath(new URL('.', import.meta.url));
await build({
  entryPoints: [join(example, 'src', 'main.jsx')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  outdir,
  nodePaths: [join(here, 'node_modules')],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
// the example's page, its script pointing at the bundle instead of the source
const html = readFileSync(join(example, 'index.html'), 'utf8')
  .replace('/src/main.jsx', '/main.js')
  .replace('</head>', '  <link rel="stylesheet" href="/main.css" />\n  </head>');
writeFileSync(join(outdir, 'index.html'), html);
console.log(JSON.stringify({ files: ['index.html', 'main.js', 'main.css'] }));
