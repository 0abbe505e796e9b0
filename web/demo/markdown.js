// Markdown to DOM, safely: model output is untrusted text, so this never
// builds HTML strings. Every piece of text becomes a Text node, every element
// is made with createElement, and the only attribute taken from the text is a
// link's href, kept only when it is http(s) or mailto. Raw HTML in the input
// (`<img src=x onerror=...>`) therefore shows up as the characters it is.
//
// Supported: paragraphs, headings (#..######), fenced code blocks (``` with
// an optional language), bullet and numbered lists, block quotes, horizontal
// rules, and inline `code`, **bold**, *italic* / _italic_, ~~strike~~ and
// [links](https://...). Streaming-friendly: an unclosed fence renders as a
// code block, so a reply can be re-rendered as it grows.

const SAFE_URL = /^(https?:|mailto:)/i;

/** Renders `text` as Markdown into a fresh DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // the closing fence (or past the end while streaming)
      fragment.append(codeBlock(body.join('\n'), fence[2]));
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      fragment.append(element(`h${Math.min(heading[1].length + 2, 6)}`, inline(heading[2])));
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      fragment.append(document.createElement('hr'));
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ''));
      const quote = document.createElement('blockquote');
      quote.append(renderMarkdown(quoted.join('\n')));
      fragment.append(quote);
      continue;
    }
    const item = listItem(line);
    if (item) {
      const list = document.createElement(item.ordered ? 'ol' : 'ul');
      if (item.ordered && item.start !== 1) list.start = item.start;
      while (i < lines.length) {
        const next = listItem(lines[i]);
        if (!next || next.ordered !== item.ordered) break;
        let content = next.text;
        i++;
        // Indented continuation lines belong to the item.
        while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !listItem(lines[i])) content += ' ' + lines[i++].trim();
        list.append(element('li', inline(content)));
      }
      fragment.append(list);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) paragraph.push(lines[i++]);
    const p = document.createElement('p');
    paragraph.forEach((l, k) => {
      if (k > 0) p.append(document.createElement('br'));
      p.append(inline(l));
    });
    fragment.append(p);
  }
  return fragment;
}

function startsBlock(line) {
  return /^\s*(```|~~~)/.test(line) || /^#{1,6}\s/.test(line) || /^\s*>/.test(line) || listItem(line) !== null;
}

function listItem(line) {
  const m = line.match(/^\s{0,3}(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/);
  if (!m) return null;
  return { ordered: m[2] !== undefined, start: m[2] ? Number(m[2]) : 1, text: m[3] };
}

function element(tag, ...children) {
  const el = document.createElement(tag);
  el.append(...children);
  return el;
}

function codeBlock(code, language) {
  const pre = document.createElement('pre');
  const el = element('code', document.createTextNode(code));
  if (language) el.dataset.language = language;
  pre.append(el);
  return pre;
}

// Inline spans, in priority order: code first (nothing inside it is
// Markdown), then links, then emphasis.
const INLINE = /`([^`\n]+)`|\[([^\]\n]+)\]\(([^()\s]+)\)|\*\*([^*\n]+)\*\*|__([^_\n]+)__|~~([^~\n]+)~~|\*([^*\n]+)\*|\b_([^_\n]+)_\b/;

/** Inline Markdown of one line as a DocumentFragment. */
export function inline(text) {
  const fragment = document.createDocumentFragment();
  let rest = text;
  while (rest) {
    const m = rest.match(INLINE);
    if (!m) {
      fragment.append(document.createTextNode(rest));
      break;
    }
    if (m.index > 0) fragment.append(document.createTextNode(rest.slice(0, m.index)));
    const [whole, code, label, url, bold1, bold2, strike, em1, em2] = m;
    if (code !== undefined) fragment.append(element('code', document.createTextNode(code)));
    else if (label !== undefined) fragment.append(link(label, url));
    else if (bold1 !== undefined || bold2 !== undefined) fragment.append(element('strong', inline(bold1 ?? bold2)));
    else if (strike !== undefined) fragment.append(element('s', inline(strike)));
    else fragment.append(element('em', inline(em1 ?? em2)));
    rest = rest.slice(m.index + whole.length);
  }
  return fragment;
}

function link(label, url) {
  if (!SAFE_URL.test(url)) return document.createTextNode(`[${label}](${url})`);
  const a = element('a', inline(label));
  a.href = url;
  a.rel = 'noopener noreferrer nofollow';
  a.target = '_blank';
  return a;
}
