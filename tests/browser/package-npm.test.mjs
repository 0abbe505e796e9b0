// The published form of the package: `npm pack` in web/, installed from
// the tarball into a fresh app (offline: it has no dependencies), imported
// by a page through an import map that points where the package's exports
// map resolves `hearth-llm`, and by TypeScript through its `types`. The page
// loads the default model package and generates a few tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startSession, requireWebGPU } from './harness.mjs';
import { REPO, MODEL_PATH, missingPrerequisites, prerequisitesMet } from './lib/package-fixtures.mjs';

const WEB = path.join(REPO, 'web');
const TSC = path.join(WEB, 'node_modules', '.bin', 'tsc');
const missing = missingPrerequisites();
let tmp;
let session;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-npm-'));
});
after(async () => {
  await session?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });

test('npm pack yields a tarball that installs into a fresh app and runs a model there', { timeout: 300_000 }, async (t) => {
  if (!prerequisitesMet(t, missing)) return;
  // 1. Pack: dist/ with the wasm, no sources.
  const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', tmp], WEB));
  const files = packed.files.map((f) => f.path);
  t.diagnostic(`${packed.filename}: ${files.length} files, ${(packed.size / 2 ** 20).toFixed(1)} MiB packed`);
  for (const f of ['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/worker.js', 'dist/hash-worker.js', 'dist/wasm/hearth_llm.js', 'dist/wasm/hearth_llm_bg.wasm', 'dist/wasm/hearth_llm.d.ts',
    'dist/wasm-threads/hearth_llm.js', 'dist/wasm-threads/hearth_llm_bg.wasm']) {
    assert.ok(files.includes(f), `the tarball has ${f}`);
  }
  assert.ok(files.some((f) => /^dist\/wasm-threads\/snippets\/.+\/workerHelpers\.js$/.test(f)), 'the tarball has the thread pool\'s worker script');
  assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('node_modules/')), 'no sources or dependencies in the tarball');

  // 2. A fresh app installs the tarball (nothing to fetch: no dependencies).
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }, null, 2));
  npm(['install', '--offline', '--no-audit', '--no-fund', path.join(tmp, packed.filename)], app);
  const installed = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/hearth-llm/package.json'), 'utf8'));
  assert.deepEqual(Object.keys(installed.dependencies ?? {}), [], 'no runtime dependencies');

  // 3. Where the exports map sends `hearth-llm` (resolved by Node, from the app).
  fs.writeFileSync(path.join(app, 'resolve.mjs'), "console.log(import.meta.resolve('hearth-llm'));\n");
  const entry = fileURLToPath(execFileSync(process.execPath, ['resolve.mjs'], { cwd: app, encoding: 'utf8' }).trim());
  assert.equal(entry, path.join(app, 'node_modules/hearth-llm/dist/index.js'));
  const entryUrl = '/' + path.relative(app, entry).split(path.sep).join('/');

  // 4. TypeScript sees the package's types through the exports map.
  fs.writeFileSync(path.join(app, 'check.ts'), `
    import { createEngine, isHearthError, type ChatCompletion, type LoadProgress } from 'hearth-llm';
    export async function run(model: string): Promise<string> {
      const engine = await createEngine({ model, backend: 'auto', threads: 2, worker: true, onProgress: (p: LoadProgress) => console.log(p.phase, p.loadedBytes) });
      const reply: ChatCompletion = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
      for await (const chunk of await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true })) {
        console.log(chunk.choices[0].delta.content ?? '');
      }
      try { await engine.completions.create({ prompt: 'x' }); } catch (e) { if (isHearthError(e, 'invalid_request')) console.log(e.param); }
      return reply.choices[0].message.content + engine.info.model;
    }
  `);
  execFileSync(TSC, ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', 'check.ts'], { cwd: app, encoding: 'utf8' });

  // 5. A page of the app imports the package by name and runs the default model.
  fs.writeFileSync(path.join(app, 'index.html'), `<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify({ imports: { 'hearth-llm': entryUrl } })}</script>
<script type="module">
  import { createEngine } from 'hearth-llm';
  try {
    const engine = await createEngine({ model: ${JSON.stringify(MODEL_PATH)}, backend: 'webgpu', context: 64 });
    const reply = await engine.completions.create({ prompt: 'The capital of France is', max_tokens: 3, temperature: 0 });
    window.result = { ok: true, text: reply.choices[0].text, usage: reply.usage, resources: performance.getEntriesByType('resource').map((e) => e.name) };
  } catch (e) {
    window.result = { ok: false, message: String(e), code: e.code };
  }
</script>
`);
  session = await startSession({ '/': app });
  const page = await session.open('');
  if (!(await requireWebGPU(page, t))) return;
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 240_000 });
  const result = await page.evaluate(() => window.result);
  assert.ok(result.ok, `the app failed: ${result.message}`);
  t.diagnostic(`the app generated ${JSON.stringify(result.text)}`);
  assert.equal(result.usage.completion_tokens, 3);
  const own = result.resources.filter((r) => /\.(js|wasm)$/.test(r)).map((r) => new URL(r).pathname);
  assert.ok(own.length > 0 && own.every((p) => p.startsWith('/node_modules/hearth-llm/dist/')), `the app loaded only the installed package: ${own.join(', ')}`);
});
