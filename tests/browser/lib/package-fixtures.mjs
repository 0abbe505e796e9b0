// Shared by the npm package's browser tests: where the default model
// package is, the native engine's greedy outputs to compare with, and a
// check that skips (or fails under CI=true) when something is missing.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { IN_CI } from '../harness.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MODEL_NAME = 'SmolLM2-135M-Instruct-q4_1';
/** The default model package (`hearth convert` output). */
export const MODEL_DIR = path.join(REPO, 'models', MODEL_NAME);
/** Its URL path under the test server's default mounts. */
export const MODEL_PATH = `/models/${MODEL_NAME}/`;
export const GGUF = path.join(REPO, 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf');
export const HEARTH_CLI = path.join(REPO, 'target', 'release', 'hearth');
export const DIST = path.join(REPO, 'web', 'dist');
export const FIXTURE = path.join(REPO, '..', 'shared', 'fixtures', 'smollm2_exact.json');

/** What is missing for the package's browser tests (empty when nothing is). */
export function missingPrerequisites({ cli = false } = {}) {
  const missing = [];
  if (!fs.existsSync(path.join(DIST, 'index.js'))) missing.push('web/dist (web/tools/build-package.sh)');
  if (!fs.existsSync(path.join(MODEL_DIR, 'manifest.json'))) {
    missing.push(`models/${MODEL_NAME} (target/release/hearth convert models/SmolLM2-135M-Instruct.Q4_1.gguf models/${MODEL_NAME})`);
  }
  if (cli && !fs.existsSync(HEARTH_CLI)) missing.push('target/release/hearth (scripts/build.sh)');
  if (cli && !fs.existsSync(GGUF)) missing.push('models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)');
  return missing;
}

/** Skips `t` (fails under CI=true) when `missing` is not empty; returns whether the test may go on. */
export function prerequisitesMet(t, missing) {
  if (missing.length === 0) return true;
  const reason = `missing ${missing.join(', ')}`;
  if (IN_CI) throw new Error(`CI=true but ${reason}`);
  t.skip(reason);
  return false;
}

/**
 * Greedy generation by the native engine (`hearth generate --json`, wgpu on
 * the local Vulkan device): `{prompt_ids, ids, text, finish_reason}`.
 */
export function nativeGenerate(args) {
  const run = spawnSync(HEARTH_CLI, ['generate', '-m', GGUF, '--ctx', '256', '--temperature', '0', '--json', ...args], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? os.tmpdir() },
    timeout: 120_000,
  });
  if (run.status !== 0) throw new Error(`hearth generate ${args.join(' ')} failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout);
}

/** The exact reference's raw_story case (prompt and greedy ids). */
export function rawStoryCase() {
  return JSON.parse(fs.readFileSync(FIXTURE, 'utf8')).cases.find((c) => c.id === 'raw_story');
}
