// The text generation panel: a raw prompt completed by the model, with the
// sampling controls; the same seed and settings give the same text.
import * as stats from './stats.js';
import { reportEngineLost } from './format.js';

const $ = (id) => document.getElementById(id);
let engine = null;
let controller = null;

const NUMBER_FIELDS = {
  temperature: 'temperature',
  top_p: 'top-p',
  top_k: 'top-k',
  min_p: 'min-p',
  repetition_penalty: 'repetition-penalty',
  max_tokens: 'max-tokens',
  seed: 'seed',
};

export function setEngine(e) {
  engine = e;
  update();
}

function update() {
  $('generate').disabled = !engine || controller !== null;
  $('text-stop').hidden = controller === null;
  const greedy = $('greedy').checked;
  for (const id of ['temperature', 'top-p', 'top-k', 'min-p', 'seed']) $(id).disabled = greedy;
}

/** The request's sampling settings from the form (greedy: temperature 0). */
export function samplingSettings() {
  const settings = {};
  for (const [key, id] of Object.entries(NUMBER_FIELDS)) settings[key] = Number($(id).value);
  if ($('greedy').checked) {
    settings.temperature = 0;
    delete settings.top_p;
    delete settings.top_k;
    delete settings.min_p;
    delete settings.seed;
  }
  return settings;
}

async function generate() {
  const prompt = $('text-prompt').value;
  if (!engine || controller || !prompt) return;
  controller = new AbortController();
  update();
  const out = $('text-output');
  const generated = document.createElement('span');
  generated.className = 'generated';
  out.replaceChildren(document.createTextNode(prompt), generated);
  stats.startRequest();
  let usage = null;
  let failure = null;
  const running = engine; // loadModel() may swap the engine before this ends
  try {
    const stream = await running.completions.create({ prompt, stream: true, signal: controller.signal, ...samplingSettings() });
    for await (const chunk of stream) {
      const text = chunk.choices[0]?.text ?? '';
      if (text) {
        generated.textContent += text;
        stats.tokenArrived();
      }
      usage = chunk.usage ?? usage;
    }
  } catch (e) {
    failure = e;
    const error = document.createElement('p');
    error.className = 'note';
    error.textContent = `error: ${e.message ?? e}`;
    out.append(error);
  } finally {
    controller = null;
    update();
  }
  stats.showUsage(usage, running.stats());
  reportEngineLost(failure);
}

export function initTextGeneration() {
  $('generate').addEventListener('click', generate);
  $('text-stop').addEventListener('click', () => controller?.abort());
  $('greedy').addEventListener('change', update);
  $('text-prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate();
  });
  update();
}
