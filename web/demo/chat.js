// The chat panel: a multi-turn conversation with streamed replies rendered
// as Markdown (safely: see markdown.js), Stop, regenerate, edit-and-resend
// of the last user message, clear, and an editable system prompt. Later
// turns extend the same conversation, so the engine reuses its KV cache and
// only prefills the new tokens.
import { renderMarkdown } from './markdown.js';
import * as stats from './stats.js';
import { reportEngineLost } from './format.js';

const $ = (id) => document.getElementById(id);
const log = $('messages');
const input = $('chat-input');

/** The conversation so far: {role: 'user' | 'assistant', content}. */
let messages = [];
let engine = null;
let controller = null;

/** Sampling for chat: SmolLM2's recommended low temperature, a mild guard against loops. */
const CHAT_SAMPLING = { temperature: 0.2, top_p: 0.9, repetition_penalty: 1.05 };

export function setEngine(e) {
  engine = e;
  input.disabled = !e;
  updateButtons();
  if (e) input.focus();
}

function busy() {
  return controller !== null;
}

function updateButtons() {
  const idle = engine && !busy();
  $('send').disabled = !idle;
  $('send').hidden = busy();
  $('stop').hidden = !busy();
  const last = messages[messages.length - 1];
  $('regenerate').disabled = !idle || last?.role !== 'assistant';
  $('edit-last').disabled = !idle || !messages.some((m) => m.role === 'user');
  $('clear').disabled = !idle || messages.length === 0;
}

function bubble(role, content) {
  const el = document.createElement('div');
  el.className = `message ${role}`;
  el.setAttribute('aria-label', role === 'user' ? 'You' : 'Assistant');
  if (role === 'user') {
    el.textContent = content;
  } else {
    const body = document.createElement('div');
    body.className = 'content';
    body.append(renderMarkdown(content));
    el.append(body);
  }
  return el;
}

function renderAll() {
  log.replaceChildren(...messages.map((m) => bubble(m.role, m.content)));
  if (!messages.length) {
    const p = document.createElement('p');
    p.className = 'empty muted';
    p.textContent = 'Ask anything. The model runs on this device: nothing you type leaves the page.';
    log.append(p);
  }
  updateButtons();
}

function conversation() {
  const system = $('system-prompt').value.trim();
  return [...(system ? [{ role: 'system', content: system }] : []), ...messages.map(({ role, content }) => ({ role, content }))];
}

/** Streams the assistant's reply to the conversation as it stands. */
async function reply() {
  controller = new AbortController();
  const message = { role: 'assistant', content: '' };
  messages.push(message);
  renderAll();
  const el = log.lastElementChild;
  const body = el.querySelector('.content');
  el.setAttribute('aria-busy', 'true');
  stats.startRequest();
  let pending = false;
  const paint = () => {
    pending = false;
    body.replaceChildren(renderMarkdown(message.content));
    log.scrollTop = log.scrollHeight;
    el.scrollIntoView({ block: 'end' });
  };
  let finish = null;
  let usage = null;
  let failure = null;
  const running = engine; // loadModel() may swap the engine before this ends
  try {
    const stream = await running.chat.completions.create({
      messages: conversation().slice(0, -1), // all but the empty reply being written
      stream: true,
      signal: controller.signal,
      max_tokens: Math.max(1, Number($('chat-max-tokens').value) || 512),
      truncation: 'auto', // a conversation longer than the context drops its oldest turns
      ...CHAT_SAMPLING,
    });
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content ?? '';
      if (delta) {
        if (!message.content) performance.mark('hearth:first-token');
        message.content += delta;
        stats.tokenArrived();
        if (!pending) {
          pending = true;
          requestAnimationFrame(paint);
        }
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
  } catch (e) {
    finish = 'error';
    message.error = e.message ?? String(e);
    failure = e;
  } finally {
    controller = null;
  }
  paint();
  el.removeAttribute('aria-busy');
  const note = finish === 'abort' ? 'stopped' : finish === 'length' ? 'reached the token limit' : finish === 'error' ? `error: ${message.error}` : '';
  if (note) {
    const span = document.createElement('span');
    span.className = 'note';
    span.textContent = `(${note})`;
    el.append(span);
  }
  stats.showUsage(usage, running.stats());
  updateButtons();
  input.focus();
  reportEngineLost(failure);
}

async function send() {
  const text = input.value.trim();
  if (!text || !engine || busy()) return;
  input.value = '';
  messages.push({ role: 'user', content: text });
  await reply();
}

export function initChat() {
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $('stop').addEventListener('click', () => controller?.abort());
  $('regenerate').addEventListener('click', () => {
    if (messages[messages.length - 1]?.role === 'assistant') messages.pop();
    reply();
  });
  $('edit-last').addEventListener('click', () => {
    const at = messages.map((m) => m.role).lastIndexOf('user');
    if (at < 0) return;
    input.value = messages[at].content;
    messages = messages.slice(0, at);
    renderAll();
    input.focus();
  });
  $('clear').addEventListener('click', () => {
    messages = [];
    renderAll();
  });
  updateButtons();
}
