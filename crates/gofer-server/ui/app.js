// Gofer's web UI. No build step and no third-party code: the server hands each page a small shell with the facts
// below (`boot`); this script draws the page from the API, with the viewer's session, and stays live by following the
// server's own streams (events as NDJSON, task logs as bytes). Every action it offers is one the server said the
// viewer may take (`boot.can`); the API checks each request again.
'use strict';

const boot = JSON.parse(document.getElementById('boot').textContent);
const root = document.getElementById('app');

// ---------------------------------------------------------------------------------------------------------------
// DOM

const SVG = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '/', class: 'x'}, 'text', child…). */
function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function replace(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const enc = encodeURIComponent;

function pipelinePath(ns, p) {
  return `/namespaces/${enc(ns)}/pipelines/${enc(p)}`;
}

function runPath(ns, p, run) {
  return `${pipelinePath(ns, p)}/runs/${run}`;
}

function taskPath(ns, p, run, task) {
  return `${runPath(ns, p, run)}/tasks/${enc(task)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function toLogin() {
  location.assign(`/login?next=${enc(location.pathname + location.search)}`);
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api${path}`, options);
  } catch (e) {
    throw new ApiError(0, 'The Gofer server cannot be reached; is it running?');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && !boot.dev_mode) toLogin();
    const message = data && data.message ? data.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/**
 * The streams this page holds open. They are closed when the page is left: a browser may keep a left page alive in
 * its back/forward cache, streams and all, and a handful of such connections is all a browser opens to one server,
 * so the next pages would wait for them. A page shown again from that cache reloads, to be live again.
 */
const openStreams = new Set();
window.addEventListener('pagehide', () => {
  for (const abort of openStreams) abort.abort();
  openStreams.clear();
});
window.addEventListener('pageshow', (e) => {
  if (e.persisted) location.reload();
});

/**
 * Reads a streamed response chunk by chunk until it ends or `stop()` is called. `onEnd(error)` is told how it
 * ended (no error: the server closed it).
 */
function stream(path, onChunk, onEnd) {
  const abort = new AbortController();
  openStreams.add(abort);
  (async () => {
    try {
      const response = await fetch(`/api${path}`, { credentials: 'same-origin', signal: abort.signal });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try {
          message = (await response.json()).message || message;
        } catch (e) {
          // not JSON: keep the status line
        }
        if (response.status === 401 && !boot.dev_mode) toLogin();
        throw new ApiError(response.status, message);
      }
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        onChunk(value);
      }
      if (onEnd) onEnd(null);
    } catch (e) {
      if (e.name !== 'AbortError' && onEnd) onEnd(e);
    } finally {
      openStreams.delete(abort);
    }
  })();
  return { stop: () => abort.abort() };
}

/**
 * Follows the event stream (`query` holds its filters) and calls `onEvent` with each event, oldest first. When the
 * stream breaks (the server restarted), it connects again after the last event seen, so nothing is missed.
 */
function followEvents(query, onEvent) {
  if (boot.can.read_events === false) {
    const mark = document.getElementById('live');
    if (mark) {
      mark.className = 'live off';
      mark.textContent = 'not live';
      mark.title = 'Your token may not read events, so this page does not update by itself; reload it to refresh.';
    }
    return { stop: () => {} };
  }
  let last = null;
  let current = null;
  let stopped = false;
  const connect = () => {
    const params = new URLSearchParams(query);
    params.set('follow', 'true');
    if (last !== null) {
      params.delete('tail');
      params.set('after', String(last));
    }
    const decoder = new TextDecoder();
    let pending = '';
    current = stream(
      `/events?${params}`,
      (chunk) => {
        pending += decoder.decode(chunk, { stream: true });
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (!line.trim()) continue;
          try {
            const event = JSON.parse(line);
            last = event.id;
            onEvent(event);
          } catch (e) {
            console.warn('an event line could not be read', e);
          }
        }
      },
      (error) => {
        if (stopped) return;
        if (error && error.status >= 400 && error.status < 500) {
          notify(`Live updates stopped: ${error.message}`, 'problem');
          return;
        }
        setLive(false);
        setTimeout(() => {
          if (!stopped) connect();
        }, 2000);
      },
    );
    setLive(true);
  };
  connect();
  return {
    stop: () => {
      stopped = true;
      if (current) current.stop();
    },
  };
}

/** Calls `fn` once, shortly after the last of a burst of calls. */
function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

function ago(ms) {
  if (!ms) return 'never';
  const seconds = Math.round((Date.now() - ms) / 1000);
  const future = seconds < 0;
  const text = span(Math.abs(seconds) * 1000);
  return future ? `in ${text}` : `${text} ago`;
}

function span(ms) {
  const seconds = Math.round(ms / 1000);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function time(ms) {
  return ms ? h('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() }, ago(ms)) : '—';
}

/** How long something took, or has taken so far. */
function took(started, ended) {
  if (!started) return '—';
  return span((ended || Date.now()) - started);
}

/** The one word that says where a run or task is: its status once complete, else its state. */
function phase(item) {
  return item.state === 'complete' ? item.status : item.state;
}

function badge(word, extra) {
  return h('span', { class: `badge st-${word}` }, extra || word.replace(/_/g, ' '));
}

function reasonText(reason) {
  return reason ? `${reason.reason.replace(/_/g, ' ')}: ${reason.description}` : '';
}

function strategyText(strategy) {
  if (!strategy) return 'immediate';
  switch (strategy.kind) {
    case 'blue_green':
      return `blue-green, ${strategy.verify_runs} verification run(s)`;
    case 'canary': {
      const bake = strategy.bake_seconds ? `, bake ${span(strategy.bake_seconds * 1000)}` : '';
      return `canary ${strategy.steps.join('% → ')}%, ${strategy.min_runs} run(s) per stage, ≥ ${Math.round(
        strategy.success_threshold * 100,
      )}% successful${bake}`;
    }
    default:
      return strategy.kind;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Page frame

let toastTimer = null;

function notify(message, kind) {
  const toast = document.getElementById('toast');
  if (!toast) return;
  replace(toast, h('p', { class: kind || 'note' }, message));
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toast.hidden = true;
  }, kind === 'problem' ? 10000 : 4000);
}

function setLive(on) {
  const mark = document.getElementById('live');
  if (!mark) return;
  mark.className = on ? 'live on' : 'live off';
  mark.textContent = on ? 'live' : 'reconnecting…';
  mark.title = on ? 'Updates arrive as they happen' : 'The server cannot be reached; trying again';
}

function frame(crumbs, ...content) {
  const here = location.pathname;
  const nav = [
    ['/', 'Pipelines', here === '/' || here.startsWith('/namespaces/')],
    ['/extensions', 'Extensions', here === '/extensions'],
    ['/events', 'Events', here === '/events'],
  ];
  const who = boot.dev_mode
    ? h('span', { class: 'who', title: 'No login: anyone who reaches this server may do anything' }, 'development mode')
    : h(
        'form',
        { method: 'post', action: '/logout', class: 'who' },
        h('span', {}, boot.user ? `signed in as ${boot.user}` : ''),
        h('button', { type: 'submit', class: 'link' }, 'Log out'),
      );
  const header = h(
    'header',
    { class: 'top' },
    h('a', { href: '/', class: 'brand', 'aria-label': 'Gofer home' }, h('img', { src: '/ui/favicon.svg', alt: '' }), 'Gofer'),
    h(
      'nav',
      { 'aria-label': 'Main' },
      nav.map(([href, label, current]) => h('a', { href, 'aria-current': current ? 'page' : null }, label)),
    ),
    h('span', { id: 'live', class: 'live' }),
    who,
  );
  const trail = crumbs.length ? crumbsNav(crumbs) : null;
  replace(root, header, h('main', { id: 'main' }, trail, content), h('div', { id: 'toast', role: 'status', hidden: true }));
}

function section(title, ...content) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, content);
}

function problem(error) {
  const message = error instanceof Error ? error.message : String(error);
  return h('p', { class: 'problem', role: 'alert' }, message);
}

/** Runs an action the user asked for; tells them how it went. */
async function act(button, what, action) {
  if (button) button.disabled = true;
  try {
    const result = await action();
    notify(what, 'note');
    return result;
  } catch (e) {
    notify(`${e.message}`, 'problem');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A button that POSTs to `path` (after asking `question`, if any), tells `done`, then calls `after`. */
function actionButton({ id, label, kind, path, question, done, after }) {
  return h(
    'button',
    {
      type: 'button',
      id,
      class: kind,
      onclick: async (e) => {
        if (question && !confirm(question)) return;
        const result = await act(e.target, done, () => api('POST', path, {}));
        if (result !== undefined && after) after(result);
      },
    },
    label,
  );
}

/** A table: a header row naming `columns`, then `rows`. */
function table(attrs, columns, rows) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c))));
  return h('table', attrs, head, h('tbody', {}, rows));
}

function ns() {
  return boot.namespace;
}

// ---------------------------------------------------------------------------------------------------------------
// The DAG: tasks in columns by depth, edges labelled with the parent status they need.

const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 72;
const GAP_Y = 20;

/** `tasks`: [{id, depends_on: {parent: 'Success'|'Failure'|'Any'}, phase?, title?}] */
function layout(tasks) {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0;
    visiting.add(id);
    const task = byId.get(id);
    const parents = Object.keys((task && task.depends_on) || {}).filter((p) => byId.has(p));
    const d = parents.length ? Math.max(...parents.map(depthOf)) + 1 : 0;
    depth.set(id, d);
    return d;
  };
  tasks.forEach((t) => depthOf(t.id));
  const columns = [];
  for (const t of tasks) {
    const d = depth.get(t.id);
    (columns[d] = columns[d] || []).push(t);
  }
  const row = new Map();
  columns.forEach((column, d) => {
    if (d > 0) {
      // Children sit near their parents: order a column by the mean row of each task's parents.
      const weight = (t) => {
        const parents = Object.keys(t.depends_on || {}).filter((p) => row.has(p));
        return parents.length ? parents.reduce((sum, p) => sum + row.get(p), 0) / parents.length : 0;
      };
      column.sort((a, b) => weight(a) - weight(b) || a.id.localeCompare(b.id));
    } else {
      column.sort((a, b) => a.id.localeCompare(b.id));
    }
    column.forEach((t, i) => row.set(t.id, i));
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = tallest * (NODE_H + GAP_Y) - GAP_Y;
  const position = new Map();
  columns.forEach((column, d) => {
    const offset = (height - (column.length * (NODE_H + GAP_Y) - GAP_Y)) / 2;
    column.forEach((t, i) => position.set(t.id, { x: d * (NODE_W + GAP_X), y: offset + i * (NODE_H + GAP_Y) }));
  });
  return { position, width: columns.length * (NODE_W + GAP_X) - GAP_X, height };
}

/**
 * Draws the DAG. `link(task)` gives a node's target (or null), `selected` the highlighted task, `onSelect` what a
 * click does instead of following the link.
 */
function dag(tasks, { link, selected, onSelect } = {}) {
  if (!tasks.length) return h('p', { class: 'empty' }, 'No tasks.');
  const { position, width, height } = layout(tasks);
  const pad = 8;
  const edges = [];
  for (const t of tasks) {
    for (const [parent, needs] of Object.entries(t.depends_on || {})) {
      const from = position.get(parent);
      const to = position.get(t.id);
      if (!from || !to) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      const word = needs === 'Unknown' ? 'any' : needs.toLowerCase();
      edges.push(
        s(
          'g',
          { class: `edge needs-${word}`, 'data-from': parent, 'data-to': t.id },
          s('path', { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }),
          s('text', { x: mid, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, word),
        ),
      );
    }
  }
  const nodes = tasks.map((t) => {
    const at = position.get(t.id);
    const word = t.phase || 'config';
    const label = t.id.length > 20 ? `${t.id.slice(0, 19)}…` : t.id;
    const sub = t.subtitle || '';
    const body = s(
      'g',
      {
        class: `node st-${word}${selected === t.id ? ' selected' : ''}`,
        transform: `translate(${at.x},${at.y})`,
        'data-task': t.id,
        'data-phase': word,
      },
      s('title', {}, `${t.id}: ${t.title || word}`),
      s('rect', { width: NODE_W, height: NODE_H, rx: 6 }),
      s('text', { x: 10, y: 19, class: 'name' }, label),
      s('text', { x: 10, y: 36, class: 'sub' }, sub.length > 26 ? `${sub.slice(0, 25)}…` : sub),
    );
    const target = link ? link(t) : null;
    if (!target) return body;
    const anchor = s('a', { href: target, 'aria-label': `task ${t.id}: ${t.title || word}` }, body);
    if (onSelect) {
      anchor.addEventListener('click', (e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey) return;
        e.preventDefault();
        onSelect(t.id);
      });
    }
    return anchor;
  });
  const svg = s(
    'svg',
    {
      class: 'dag',
      viewBox: `${-pad} ${-pad} ${width + 2 * pad} ${height + 2 * pad}`,
      width: width + 2 * pad,
      height: height + 2 * pad,
      role: 'group',
      'aria-label': 'Tasks and their dependencies',
    },
    s(
      'defs',
      {},
      s(
        'marker',
        { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }),
      ),
    ),
    edges,
    nodes,
  );
  return h('div', { class: 'dag-scroll' }, svg);
}

// ---------------------------------------------------------------------------------------------------------------
// ANSI colours in logs

const ANSI_NAMES = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];

/** The most characters of a log the page holds; older output is dropped from the view (download raw has it all). */
const LOG_VIEW_LIMIT = 4 * 1024 * 1024;

/** Turns terminal output into styled spans, chunk by chunk (escape sequences may be split between chunks). */
class AnsiRenderer {
  constructor(target) {
    this.target = target;
    this.decoder = new TextDecoder();
    this.carry = '';
    this.style = {};
    this.size = 0;
    this.trimmed = false;
  }

  reset() {
    this.decoder = new TextDecoder();
    this.carry = '';
    this.style = {};
    this.size = 0;
    this.trimmed = false;
    this.target.replaceChildren();
  }

  /** Drops the oldest output once the view holds more than its limit, keeping the page responsive. */
  trim() {
    while (this.size > LOG_VIEW_LIMIT && this.target.firstChild) {
      this.size -= this.target.firstChild.textContent.length;
      this.target.firstChild.remove();
      this.trimmed = true;
    }
  }

  push(bytes) {
    this.write(this.decoder.decode(bytes, { stream: true }));
  }

  write(text) {
    text = this.carry + text;
    this.carry = '';
    const out = document.createDocumentFragment();
    let plain = '';
    let i = 0;
    const flush = () => {
      if (plain) out.append(this.span(plain));
      plain = '';
    };
    while (i < text.length) {
      const c = text[i];
      if (c === '\x1b') {
        if (i + 1 >= text.length) {
          this.carry = text.slice(i);
          break;
        }
        if (text[i + 1] === '[') {
          let j = i + 2;
          while (j < text.length && !/[@-~]/.test(text[j])) j++;
          if (j >= text.length) {
            this.carry = text.slice(i);
            break;
          }
          if (text[j] === 'm') {
            flush();
            this.sgr(text.slice(i + 2, j));
          }
          i = j + 1;
          continue;
        }
        if (text[i + 1] === ']') {
          // An operating-system command (window title, hyperlink): ends with BEL or ESC \.
          const bel = text.indexOf('\x07', i);
          const st = text.indexOf('\x1b\\', i);
          const end = bel >= 0 && (st < 0 || bel < st) ? bel + 1 : st >= 0 ? st + 2 : -1;
          if (end < 0) {
            this.carry = text.slice(i);
            break;
          }
          i = end;
          continue;
        }
        i += 2;
        continue;
      }
      if (c === '\r') {
        if (i + 1 >= text.length) {
          // A CR at the end of a chunk may be half of a CRLF: wait for the next chunk.
          this.carry = '\r';
          break;
        }
        if (text[i + 1] !== '\n') plain += '\n';
        i++;
        continue;
      }
      plain += c;
      i++;
    }
    flush();
    this.size += out.textContent.length;
    this.target.append(out);
    this.trim();
  }

  span(text) {
    const st = this.style;
    if (!st.fg && !st.bg && !st.bold && !st.dim && !st.italic && !st.underline && !st.inverse && !st.fgRgb && !st.bgRgb) {
      return document.createTextNode(text);
    }
    const el = document.createElement('span');
    const classes = [];
    let fg = st.fg;
    let bg = st.bg;
    if (st.inverse) [fg, bg] = [bg || 'default-bg', fg || 'default-fg'];
    if (fg) classes.push(`fg-${fg}`);
    if (bg) classes.push(`bg-${bg}`);
    if (st.bold) classes.push('b');
    if (st.dim) classes.push('dim');
    if (st.italic) classes.push('i');
    if (st.underline) classes.push('u');
    if (classes.length) el.className = classes.join(' ');
    if (st.fgRgb) el.style.color = st.fgRgb;
    if (st.bgRgb) el.style.backgroundColor = st.bgRgb;
    el.textContent = text;
    return el;
  }

  sgr(params) {
    const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => parseInt(p || '0', 10));
    const st = this.style;
    for (let k = 0; k < codes.length; k++) {
      const code = codes[k];
      if (code === 0) for (const key of Object.keys(st)) delete st[key];
      else if (code === 1) st.bold = true;
      else if (code === 2) st.dim = true;
      else if (code === 3) st.italic = true;
      else if (code === 4) st.underline = true;
      else if (code === 7) st.inverse = true;
      else if (code === 22) st.bold = st.dim = false;
      else if (code === 23) st.italic = false;
      else if (code === 24) st.underline = false;
      else if (code === 27) st.inverse = false;
      else if (code >= 30 && code <= 37) [st.fg, st.fgRgb] = [ANSI_NAMES[code - 30], null];
      else if (code === 39) st.fg = st.fgRgb = null;
      else if (code >= 40 && code <= 47) [st.bg, st.bgRgb] = [ANSI_NAMES[code - 40], null];
      else if (code === 49) st.bg = st.bgRgb = null;
      else if (code >= 90 && code <= 97) [st.fg, st.fgRgb] = [`bright-${ANSI_NAMES[code - 90]}`, null];
      else if (code >= 100 && code <= 107) [st.bg, st.bgRgb] = [`bright-${ANSI_NAMES[code - 100]}`, null];
      else if (code === 38 || code === 48) {
        const color = extendedColor(codes, k);
        k = color.next;
        if (code === 38) [st.fg, st.fgRgb] = [null, color.css];
        else [st.bg, st.bgRgb] = [null, color.css];
      }
    }
  }
}

/** A 256-colour (`38;5;n`) or true-colour (`38;2;r;g;b`) parameter, as CSS. */
function extendedColor(codes, k) {
  if (codes[k + 1] === 5) {
    const n = codes[k + 2] || 0;
    let css;
    if (n < 16) {
      const base = [
        [0, 0, 0], [205, 49, 49], [13, 188, 121], [229, 229, 16], [36, 114, 200], [188, 63, 188], [17, 168, 205],
        [229, 229, 229], [102, 102, 102], [241, 76, 76], [35, 209, 139], [245, 245, 67], [59, 142, 234],
        [214, 112, 214], [41, 184, 219], [255, 255, 255],
      ][n];
      css = `rgb(${base.join(',')})`;
    } else if (n < 232) {
      const m = n - 16;
      const level = (v) => (v ? 55 + v * 40 : 0);
      css = `rgb(${level(Math.floor(m / 36))},${level(Math.floor(m / 6) % 6)},${level(m % 6)})`;
    } else {
      const g = 8 + (n - 232) * 10;
      css = `rgb(${g},${g},${g})`;
    }
    return { css, next: k + 2 };
  }
  if (codes[k + 1] === 2) {
    const [r, g, b] = [codes[k + 2] || 0, codes[k + 3] || 0, codes[k + 4] || 0];
    return { css: `rgb(${r},${g},${b})`, next: k + 4 };
  }
  return { css: null, next: k };
}

// ---------------------------------------------------------------------------------------------------------------
// Dashboard

async function dashboardPage() {
  frame([], h('p', { class: 'loading' }, 'Loading…'));
  let namespaces;
  try {
    namespaces = (await api('GET', '/namespaces?limit=1000')).namespaces;
  } catch (e) {
    frame([], section('Pipelines', problem(e)));
    return;
  }
  const current =
    ns() || (namespaces.some((n) => n.id === 'default') ? 'default' : namespaces[0] ? namespaces[0].id : null);
  if (!current) {
    frame(
      [],
      section(
        'Pipelines',
        h('p', { class: 'empty' }, 'You may not read any namespace yet. Ask an administrator for a role that grants one.'),
      ),
    );
    return;
  }
  const switcher = h(
    'select',
    {
      id: 'namespace',
      'aria-label': 'Namespace',
      onchange: (e) => location.assign(`/?namespace=${enc(e.target.value)}`),
    },
    namespaces.map((n) => h('option', { value: n.id, selected: n.id === current }, n.name || n.id)),
  );
  const search = h('input', {
    type: 'search',
    id: 'search',
    placeholder: 'Search pipelines',
    'aria-label': 'Search pipelines',
  });
  const columns = ['Pipeline', 'State', 'Live', 'Last runs', 'Last ran', 'Next trigger'];
  const pipelinesTable = table({ class: 'pipelines' }, columns, []);
  const body = pipelinesTable.tBodies[0];
  const list = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  frame(
    [[`Namespace ${current}`]],
    h('div', { class: 'toolbar' }, h('h1', {}, 'Pipelines'), h('label', { class: 'field' }, 'Namespace ', switcher), search),
    section(null, list),
  );
  let pipelines;
  try {
    pipelines = (await api('GET', `/namespaces/${enc(current)}/pipelines?limit=1000`)).pipelines;
  } catch (e) {
    replace(list, problem(e));
    return;
  }
  if (!pipelines.length) {
    replace(
      list,
      h(
        'div',
        { class: 'empty' },
        h('p', {}, `No pipelines in ${current} yet.`),
        h('p', {}, 'Write one (see examples/ in the repository) and deploy it: ', h('code', {}, 'gofer up DIR')),
      ),
    );
  } else {
    replace(list, pipelinesTable);
  }
  const rows = new Map();
  const fill = async (pipeline) => {
    const row = rows.get(pipeline.pipeline_id);
    if (!row) return;
    const [runs, subscriptions] = await Promise.all([
      api('GET', `${pipelinePath(current, pipeline.pipeline_id)}/runs?limit=10`)
        .then((r) => r.runs)
        .catch(() => null),
      api('GET', `${pipelinePath(current, pipeline.pipeline_id)}/subscriptions`)
        .then((r) => r.subscriptions)
        .catch(() => []),
    ]);
    if (runs) {
      replace(
        row.marks,
        runs.length
          ? runs
              .slice()
              .reverse()
              .map((r) =>
                h(
                  'a',
                  {
                    class: `mark st-${phase(r)}`,
                    href: runPath(current, pipeline.pipeline_id, r.run_id),
                    title: `run ${r.run_id}: ${phase(r)}`,
                    'aria-label': `run ${r.run_id}: ${phase(r)}`,
                  },
                  '',
                ),
              )
          : h('span', { class: 'muted' }, 'no runs'),
      );
      replace(row.last, runs[0] ? time(runs[0].created) : 'never');
    }
    const next = subscriptions.map((sub) => sub.next_fire).filter(Boolean).sort((a, b) => a - b)[0];
    replace(row.next, next ? time(next) : h('span', { class: 'muted' }, subscriptions.length ? 'on events' : '—'));
  };
  const draw = (pipeline) => {
    const row = {
      state: h('td', {}, badge(pipeline.state)),
      live: h('td', {}, pipeline.live_version ? `v${pipeline.live_version}` : h('span', { class: 'muted' }, 'none')),
      marks: h('span', { class: 'marks' }),
      last: h('td'),
      next: h('td'),
    };
    const tr = h(
      'tr',
      { 'data-pipeline': pipeline.pipeline_id, 'data-search': `${pipeline.pipeline_id} ${pipeline.name}`.toLowerCase() },
      h(
        'td',
        {},
        h('a', { href: pipelinePath(current, pipeline.pipeline_id), class: 'strong' }, pipeline.name || pipeline.pipeline_id),
        pipeline.name && pipeline.name !== pipeline.pipeline_id ? h('div', { class: 'muted' }, pipeline.pipeline_id) : null,
      ),
      row.state,
      row.live,
      h('td', {}, row.marks),
      row.last,
      row.next,
    );
    row.tr = tr;
    const old = rows.get(pipeline.pipeline_id);
    rows.set(pipeline.pipeline_id, row);
    if (old) old.tr.replaceWith(tr);
    else body.append(tr);
    fill(pipeline);
  };
  pipelines.forEach(draw);
  search.addEventListener('input', () => {
    const words = search.value.toLowerCase().trim();
    for (const row of rows.values()) row.tr.hidden = words !== '' && !row.tr.dataset.search.includes(words);
  });
  const refresh = new Map();
  followEvents({ namespace: current, tail: '0' }, (event) => {
    const id = event.kind.pipeline_id;
    if (!id) return;
    if (!refresh.has(id)) {
      refresh.set(
        id,
        debounce(async () => {
          try {
            const pipeline = await api('GET', pipelinePath(current, id));
            if (!rows.size) replace(list, pipelinesTable);
            draw(pipeline);
          } catch (e) {
            const row = rows.get(id);
            if (e.status === 404 && row) {
              row.tr.remove();
              rows.delete(id);
            }
          }
        }, 250),
      );
    }
    refresh.get(id)();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Pipeline

async function pipelinePage() {
  const [namespace, id] = [boot.namespace, boot.pipeline];
  const base = pipelinePath(namespace, id);
  const crumbs = [[`Namespace ${namespace}`, `/?namespace=${enc(namespace)}`], [id]];
  const parts = {
    head: h('div'),
    start: h('div'),
    deployment: h('div'),
    dag: h('div'),
    runs: h('div'),
    chart: h('div'),
    versions: h('div'),
    subscriptions: h('div'),
  };
  frame(
    crumbs,
    parts.head,
    h(
      'div',
      { class: 'grid' },
      section('Runs', parts.runs),
      h('div', { class: 'side' }, parts.start, section('Recent runs', parts.chart), parts.deployment),
    ),
    section('Tasks of the live version', parts.dag),
    h('div', { class: 'grid even' }, section('Versions', parts.versions), section('Subscriptions', parts.subscriptions)),
  );
  let pipeline = null;
  // The runs shown: `filter` is a query the API filters by (`state=…` or `status=…`), `offset` the page.
  const runFilter = { filter: '', offset: 0 };

  const drawHead = async () => {
    try {
      pipeline = await api('GET', base);
    } catch (e) {
      replace(parts.head, problem(e));
      return;
    }
    const toggle = boot.can.set_state
      ? h(
          'button',
          {
            type: 'button',
            id: 'toggle-state',
            onclick: async (e) => {
              const state = pipeline.state === 'active' ? 'disabled' : 'active';
              const done = await act(e.target, `Pipeline ${state === 'active' ? 'enabled' : 'disabled'}.`, () =>
                api('PATCH', base, { state }),
              );
              if (done) drawHead();
            },
          },
          pipeline.state === 'active' ? 'Disable' : 'Enable',
        )
      : null;
    replace(
      parts.head,
      h(
        'div',
        { class: 'toolbar' },
        h('h1', {}, pipeline.name || id),
        badge(pipeline.state),
        pipeline.live_version
          ? h('span', { class: 'pill' }, `live v${pipeline.live_version}`)
          : h('span', { class: 'pill muted' }, 'nothing deployed'),
        h('span', { class: 'spacer' }),
        toggle,
      ),
      pipeline.description ? h('p', { class: 'muted' }, pipeline.description) : null,
    );
  };

  const drawStart = () => {
    if (!boot.can.start_run) {
      replace(parts.start);
      return;
    }
    const vars = h('textarea', {
      id: 'run-variables',
      rows: 3,
      placeholder: 'KEY=value, one per line',
      'aria-label': 'Run variables, KEY=value one per line',
    });
    const form = h(
      'form',
      {
        class: 'start',
        onsubmit: async (e) => {
          e.preventDefault();
          const variables = {};
          for (const line of vars.value.split('\n')) {
            const trimmed = line.trim();
            if (!trimmed) continue;
            const eq = trimmed.indexOf('=');
            if (eq <= 0) {
              notify(`"${trimmed}" is not KEY=value`, 'problem');
              return;
            }
            variables[trimmed.slice(0, eq).trim()] = trimmed.slice(eq + 1);
          }
          const run = await act(form.querySelector('button'), 'Run started.', () =>
            api('POST', `${base}/runs`, { variables }),
          );
          if (run) location.assign(runPath(namespace, id, run.run_id));
        },
      },
      h('label', { for: 'run-variables' }, 'Variables (optional)'),
      vars,
      h('button', { type: 'submit', id: 'start-run', class: 'primary' }, 'Start a run'),
    );
    replace(parts.start, section('Start a run', form));
  };

  const drawRuns = async () => {
    let page;
    try {
      const only = runFilter.filter ? `&${runFilter.filter}` : '';
      page = await api('GET', `${base}/runs?limit=25&offset=${runFilter.offset}${only}`);
    } catch (e) {
      replace(parts.runs, problem(e));
      return;
    }
    const filter = h(
      'select',
      {
        id: 'run-filter',
        'aria-label': 'Show runs',
        onchange: (e) => {
          runFilter.filter = e.target.value;
          runFilter.offset = 0;
          drawRuns();
        },
      },
      [
        ['', 'All runs'],
        ['state=pending', 'Queued'],
        ['state=running', 'Running'],
        ['status=successful', 'Successful'],
        ['status=failed', 'Failed'],
        ['status=cancelled', 'Cancelled'],
      ].map(([value, label]) => h('option', { value, selected: value === runFilter.filter }, label)),
    );
    const rows = page.runs.map((r) =>
      h(
        'tr',
        { 'data-run': r.run_id },
        h('td', {}, h('a', { href: runPath(namespace, id, r.run_id), class: 'strong' }, `#${r.run_id}`)),
        h('td', {}, badge(phase(r))),
        h('td', {}, `v${r.version}`, r.routing && r.routing.candidate ? h('span', { class: 'pill' }, 'candidate') : null),
        h('td', {}, time(r.created)),
        h('td', {}, r.started ? took(r.started, r.ended) : '—'),
        h('td', { class: 'muted' }, r.initiator ? `${r.initiator.kind} ${r.initiator.name}` : ''),
      ),
    );
    const pager = h(
      'div',
      { class: 'pager' },
      h(
        'button',
        {
          type: 'button',
          disabled: runFilter.offset === 0,
          onclick: () => {
            runFilter.offset = Math.max(0, runFilter.offset - 25);
            drawRuns();
          },
        },
        'Newer',
      ),
      h(
        'button',
        {
          type: 'button',
          disabled: page.next_offset === null || page.next_offset === undefined,
          onclick: () => {
            runFilter.offset = page.next_offset;
            drawRuns();
          },
        },
        'Older',
      ),
    );
    replace(
      parts.runs,
      h('div', { class: 'toolbar small' }, filter),
      page.runs.length === 0 && runFilter.filter
        ? h('p', { class: 'empty' }, 'No runs match the filter.')
        : page.runs.length === 0
          ? h(
              'p',
              { class: 'empty' },
              pipeline && !pipeline.live_version
                ? 'No runs yet. Deploy a version first: gofer up DIR'
                : `No runs yet. Start one here, or with: gofer run start ${id}`,
            )
          : table({ class: 'runs' }, ['Run', 'Status', 'Version', 'Started', 'Took', 'By'], rows),
      pager,
    );
  };

  const drawChart = async () => {
    let runs;
    try {
      runs = (await api('GET', `${base}/runs?limit=40`)).runs.slice().reverse();
    } catch (e) {
      replace(parts.chart, problem(e));
      return;
    }
    if (!runs.length) {
      replace(parts.chart, h('p', { class: 'empty' }, 'Durations and outcomes of the last runs show here.'));
      return;
    }
    const durations = runs.map((r) => (r.started ? (r.ended || Date.now()) - r.started : 0));
    const longest = Math.max(1, ...durations);
    const w = 300;
    const hgt = 90;
    // Slots for 40 runs, so one run is a bar, not a wall.
    const bar = w / Math.max(runs.length, 40);
    const counts = {};
    runs.forEach((r) => {
      counts[phase(r)] = (counts[phase(r)] || 0) + 1;
    });
    const chart = s(
      'svg',
      { class: 'chart', viewBox: `0 0 ${w} ${hgt + 14}`, role: 'img', 'aria-label': 'Durations of the last runs' },
      runs.map((r, i) => {
        const height = Math.max(2, (durations[i] / longest) * hgt);
        return s(
          'a',
          { href: runPath(namespace, id, r.run_id) },
          s(
            'rect',
            { class: `st-${phase(r)}`, x: i * bar + 1, y: hgt - height, width: Math.max(1, bar - 2), height },
            s('title', {}, `#${r.run_id} ${phase(r)}, ${span(durations[i])}`),
          ),
        );
      }),
      s('text', { x: 0, y: hgt + 12, class: 'axis' }, `longest ${span(longest)}`),
    );
    replace(
      parts.chart,
      chart,
      h(
        'p',
        { class: 'legend' },
        Object.entries(counts).map(([word, n]) => h('span', {}, badge(word, `${n} ${word}`))),
      ),
    );
  };

  const drawDeployment = async () => {
    let deployments;
    try {
      deployments = (await api('GET', `${base}/deployments?limit=1`)).deployments;
    } catch (e) {
      replace(parts.deployment, e.status === 403 ? null : section('Deployment', problem(e)));
      return;
    }
    const d = deployments[0];
    const buttons = [];
    /** A button that POSTs `path` (after `question`, if any), says `done`, and redraws the page's facts. */
    const after = () => {
      drawDeployment();
      drawHead();
    };
    const action = (id, label, kind, path, done, question) =>
      actionButton({ id, label, kind, path, question, done, after });
    if (d && d.state === 'running') {
      const at = `${base}/deployments/${d.deployment_id}`;
      if (boot.can.promote) buttons.push(action('promote', 'Promote now', 'primary', `${at}/promote`, 'Promoted.'));
      if (boot.can.abort) buttons.push(action('abort', 'Abort', 'danger', `${at}/abort`, 'Aborted.'));
    }
    // Rolling back needs a version that was live before this one.
    if (boot.can.rollback && pipeline && pipeline.live_version && d && d.state !== 'running' && d.from_version) {
      const question = 'Roll back to the version live before this one?';
      buttons.push(action('rollback', 'Roll back', null, `${base}/rollback`, 'Rolled back.', question));
    }
    if (!d) {
      replace(parts.deployment, section('Deployment', h('p', { class: 'empty' }, 'No deployment yet: gofer up DIR'), buttons));
      return;
    }
    const counts = d.counts.length
      ? table(
          { class: 'counts' },
          ['Version', 'Stage', 'Started', 'Successful', 'Failed', 'Cancelled'],
          d.counts.map((c) =>
            h(
              'tr',
              {},
              [`v${c.version}${c.version === d.to_version ? ' (new)' : ''}`, c.stage, c.started, c.successful, c.failed, c.cancelled].map(
                (v) => h('td', {}, String(v)),
              ),
            ),
          ),
        )
      : null;
    replace(
      parts.deployment,
      section(
        `Deployment #${d.deployment_id}`,
        h(
          'p',
          {},
          badge(d.state),
          ' ',
          d.from_version ? `v${d.from_version} → v${d.to_version}` : `v${d.to_version}`,
          ', ',
          strategyText(d.strategy),
        ),
        d.state === 'running' && d.strategy.kind === 'canary'
          ? h('p', {}, `Stage ${d.stage + 1} of ${d.strategy.steps.length}: ${d.strategy.steps[d.stage]}% of new runs.`)
          : null,
        d.reason ? h('p', { class: 'muted' }, d.reason) : null,
        counts,
        h('p', { class: 'muted' }, 'Started ', time(d.started), d.ended ? [', ended ', time(d.ended)] : null),
        buttons.length ? h('div', { class: 'actions' }, buttons) : null,
      ),
    );
  };

  const drawVersions = async () => {
    let configs;
    try {
      configs = (await api('GET', `${base}/configs?limit=50`)).configs;
    } catch (e) {
      replace(parts.versions, problem(e));
      replace(parts.dag, problem(e));
      return;
    }
    if (!configs.length) {
      replace(parts.versions, h('p', { class: 'empty' }, 'No versions registered. Deploy one: gofer up DIR'));
      replace(parts.dag, h('p', { class: 'empty' }, 'Nothing deployed yet.'));
      return;
    }
    replace(
      parts.versions,
      table({ class: 'versions' }, ['Version', 'State', 'Registered', 'Tasks', ''], configs.map((c) =>
            h(
              'tr',
              {},
              h('td', {}, `v${c.version}`),
              h('td', {}, badge(c.state)),
              h('td', {}, time(c.registered)),
              h('td', {}, String(c.config.tasks.length)),
              h(
                'td',
                {},
                boot.can.deploy && pipeline && pipeline.live_version !== c.version
                  ? h(
                      'button',
                      {
                        type: 'button',
                        class: 'small',
                        onclick: async (e) => {
                          if (!confirm(`Deploy v${c.version} (with its declared strategy)?`)) return;
                          if (await act(e.target, `Deploying v${c.version}.`, () => api('POST', `${base}/configs/${c.version}/deploy`))) {
                            drawHead();
                            drawDeployment();
                            drawVersions();
                          }
                        },
                      },
                      'Deploy',
                    )
                  : null,
              ),
            ),
          )),
    );
    const live = configs.find((c) => pipeline && c.version === pipeline.live_version) || configs[0];
    const tasks = live.config.tasks.map((t) => ({
      id: t.id,
      depends_on: t.depends_on,
      subtitle: t.image,
      title: t.image,
    }));
    replace(
      parts.dag,
      h('p', { class: 'muted' }, `v${live.version}${live.version === (pipeline && pipeline.live_version) ? ' (live)' : ''}`),
      dag(tasks),
      table({ class: 'tasks' }, ['Task', 'Image', 'Depends on'], live.config.tasks.map((t) =>
            h(
              'tr',
              {},
              h('td', {}, t.id),
              h('td', {}, h('code', {}, t.image)),
              h(
                'td',
                {},
                Object.entries(t.depends_on || {})
                  .map(([p, needs]) => `${p} (${needs.toLowerCase()})`)
                  .join(', ') || '—',
              ),
            ),
          )),
    );
  };

  const drawSubscriptions = async () => {
    let subscriptions;
    try {
      subscriptions = (await api('GET', `${base}/subscriptions`)).subscriptions;
    } catch (e) {
      replace(parts.subscriptions, problem(e));
      return;
    }
    replace(
      parts.subscriptions,
      subscriptions.length
        ? table({}, ['Extension', 'Label', 'Settings', 'Last fired', 'Next'], subscriptions.map((sub) =>
                h(
                  'tr',
                  {},
                  h('td', {}, sub.extension_id, sub.enabled ? null : h('span', { class: 'pill muted' }, 'disabled')),
                  h('td', {}, sub.label),
                  h(
                    'td',
                    {},
                    h(
                      'code',
                      {},
                      Object.entries(sub.settings)
                        .map(([k, v]) => `${k}=${v}`)
                        .join(' '),
                    ),
                  ),
                  h('td', {}, time(sub.last_fired)),
                  h('td', {}, sub.next_fire ? time(sub.next_fire) : '—'),
                ),
              ))
        : h('p', { class: 'empty' }, 'No subscriptions: runs start only when someone starts them.'),
    );
  };

  await drawHead();
  drawStart();
  drawRuns();
  drawChart();
  drawDeployment();
  drawVersions();
  drawSubscriptions();
  const onRuns = debounce(() => {
    drawRuns();
    drawChart();
  }, 300);
  const onDeploy = debounce(() => {
    drawHead().then(() => {
      drawDeployment();
      drawVersions();
      drawSubscriptions();
    });
  }, 300);
  followEvents({ namespace, pipeline: id, tail: '0' }, (event) => {
    const type = event.kind.type;
    if (type.startsWith('run_') || type === 'task_changed') onRuns();
    if (type.startsWith('deployment_') || type.startsWith('config_') || type === 'pipeline_state_changed') onDeploy();
    if (type === 'pipeline_deleted') notify('This pipeline was deleted.', 'problem');
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Run (and a task of it)

async function runPage() {
  const [namespace, id, runId] = [boot.namespace, boot.pipeline, boot.run];
  const base = runPath(namespace, id, runId);
  let selected = boot.task || null;
  const parts = { head: h('div'), graph: h('div'), task: h('div'), timeline: h('ol', { class: 'timeline' }) };
  let run = null;
  let tasks = new Map();
  let log = null;

  const crumbsOf = () => {
    const crumbs = [
      [`Namespace ${namespace}`, `/?namespace=${enc(namespace)}`],
      [id, pipelinePath(namespace, id)],
      [`Run #${runId}`, selected ? base : null],
    ];
    if (selected) crumbs.push([selected]);
    return crumbs;
  };
  frame(
    crumbsOf(),
    parts.head,
    section('Tasks', parts.graph),
    h('div', { class: 'grid' }, h('div', { id: 'task-panel' }, parts.task), section('Timeline', parts.timeline)),
  );
  const setCrumbs = () => {
    const old = root.querySelector('.crumbs');
    if (old) old.replaceWith(crumbsNav(crumbsOf()));
  };

  const select = (task) => {
    selected = task;
    history.pushState({ task }, '', task ? taskPath(namespace, id, runId, task) : base);
    document.title = `${task ? `${task} · ` : ''}Run #${runId} · Gofer`;
    setCrumbs();
    drawGraph();
    openTask(true);
  };
  window.addEventListener('popstate', (e) => {
    selected = (e.state && e.state.task) || null;
    setCrumbs();
    drawGraph();
    openTask(true);
  });

  // How long the run has taken so far: ticks by itself while it runs (no request, no redraw of the buttons).
  const tookText = h('span');
  const tick = () => {
    tookText.textContent = run && run.started ? `, took ${took(run.started, run.ended)}` : '';
  };
  const drawHead = () => {
    const cancel =
      boot.can.cancel_run && run.state !== 'complete'
        ? actionButton({
            id: 'cancel-run',
            label: 'Cancel run',
            kind: 'danger',
            path: `/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}/cancel`,
            question: `Cancel run #${runId}? Its running containers are stopped.`,
            done: 'Cancelling the run.',
          })
        : null;
    replace(
      parts.head,
      h(
        'div',
        { class: 'toolbar' },
        h('h1', {}, `Run #${runId}`),
        h('span', { id: 'run-status' }, badge(phase(run))),
        h('span', { class: 'pill' }, `v${run.version}`),
        h('span', { class: 'spacer' }),
        cancel,
      ),
      h(
        'p',
        { class: 'muted' },
        `Started by ${run.initiator.kind} ${run.initiator.name}, `,
        time(run.created),
        tookText,
        run.routing ? `, ${run.routing.reason}` : '',
      ),
      run.status_reason ? h('p', { class: run.status === 'failed' ? 'problem' : 'note' }, reasonText(run.status_reason)) : null,
      run.variables && run.variables.length
        ? h(
            'details',
            {},
            h('summary', {}, `${run.variables.length} variable(s)`),
            h(
              'ul',
              { class: 'vars' },
              run.variables.map((v) => h('li', {}, h('code', {}, `${v.key}=${v.value}`), h('span', { class: 'muted' }, ` ${v.source}`))),
            ),
          )
        : null,
    );
  };

  const drawGraph = () => {
    const list = [...tasks.values()].map((t) => ({
      id: t.task_id,
      depends_on: t.task.depends_on,
      phase: phase(t),
      subtitle: `${phase(t).replace(/_/g, ' ')}${t.exit_code !== null && t.exit_code !== undefined ? ` · exit ${t.exit_code}` : ''}${t.attempt > 1 ? ` · try ${t.attempt}` : ''}`,
      title: `${phase(t)}${t.status_reason ? ` (${reasonText(t.status_reason)})` : ''}`,
    }));
    replace(
      parts.graph,
      list.length
        ? dag(list, { link: (t) => taskPath(namespace, id, runId, t.id), selected, onSelect: select })
        : h('p', { class: 'empty' }, run && run.state === 'pending' ? 'The run is queued; its tasks appear when it starts.' : 'No tasks.'),
      h(
        'p',
        { class: 'legend' },
        ['waiting', 'running', 'successful', 'failed', 'cancelled', 'skipped'].map((w) => badge(w)),
        ' Edges say what a task needs of its parent.',
      ),
    );
  };

  const refresh = async () => {
    try {
      const [r, list] = await Promise.all([
        api('GET', `/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}`),
        api('GET', `/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}/tasks`),
      ]);
      run = r;
      tasks = new Map(list.task_executions.map((t) => [t.task_id, t]));
    } catch (e) {
      replace(parts.head, problem(e));
      return;
    }
    drawHead();
    tick();
    drawGraph();
    openTask(false);
  };

  // The selected task: its facts, attempts and log (streamed while it runs).
  let shownTask = null;
  let shownAttempt = null;
  let pinnedAttempt = null;
  const openTask = (fresh) => {
    const t = selected ? tasks.get(selected) : null;
    if (!t) {
      if (log) log.stop();
      log = null;
      shownTask = null;
      replace(
        parts.task,
        section(
          null,
          h('p', { class: 'empty' }, selected ? `This run has no task ${selected}.` : 'Select a task in the graph to see its log.'),
        ),
      );
      return;
    }
    // The latest attempt (a retry's log follows on from a failed attempt's), unless the viewer picked one.
    if (fresh || shownTask !== t.task_id) pinnedAttempt = null;
    const attempt = pinnedAttempt || t.attempt;
    const restart = fresh || shownTask !== t.task_id || shownAttempt !== attempt || !log || log.needsRestart(t);
    drawTaskFacts(t, attempt, restart);
  };

  const facts = h('div');
  const logBox = h('pre', { class: 'log', id: 'log', tabindex: 0, 'aria-label': 'Task log' });
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const logStatus = h('span', { class: 'muted', id: 'log-status' });
  logBox.addEventListener('scroll', () => {
    const atEnd = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 24;
    if (!atEnd && follow.checked && logBox.dataset.auto !== '1') follow.checked = false;
    logBox.dataset.auto = '';
  });
  follow.addEventListener('change', () => {
    if (follow.checked) scrollLog();
  });
  const scrollLog = () => {
    if (!follow.checked) return;
    logBox.dataset.auto = '1';
    logBox.scrollTop = logBox.scrollHeight;
  };

  const drawTaskFacts = (t, attempt, restart) => {
    const logUrl = `/api/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}/tasks/${enc(t.task_id)}/logs?attempt=${attempt}`;
    const cancel =
      boot.can.cancel_task && t.state !== 'complete'
        ? actionButton({
            id: 'cancel-task',
            label: 'Cancel task',
            kind: 'danger',
            path: `/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}/tasks/${enc(t.task_id)}/cancel`,
            done: `Cancelling ${t.task_id}.`,
          })
        : null;
    // Earlier attempts are kept in `attempts`; the current one is the task itself.
    const current = {
      attempt: t.attempt,
      status: phase(t),
      exit_code: t.exit_code,
      started: t.started,
      ended: t.ended,
      status_reason: t.status_reason,
    };
    const all = [...(t.attempts || []), current];
    const attempts = all.length > 1
      ? table({ class: 'attempts' }, ['Attempt', 'Status', 'Exit', 'Took', 'Reason'], all.map((a) =>
              h(
                'tr',
                { class: a.attempt === attempt ? 'current' : null, 'data-attempt': a.attempt },
                h(
                  'td',
                  {},
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'link',
                      onclick: () => {
                        pinnedAttempt = a.attempt;
                        drawTaskFacts(t, a.attempt, true);
                      },
                    },
                    `#${a.attempt}`,
                  ),
                ),
                h('td', {}, badge(a.status)),
                h('td', {}, a.exit_code === null || a.exit_code === undefined ? '—' : String(a.exit_code)),
                h('td', {}, took(a.started, a.ended)),
                h('td', {}, reasonText(a.status_reason)),
              ),
            ))
      : null;
    replace(
      facts,
      h('div', { class: 'toolbar' }, h('h2', {}, t.task_id), badge(phase(t)), h('span', { class: 'spacer' }), cancel),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Image'),
        h('dd', {}, h('code', {}, t.task.image)),
        h('dt', {}, 'Digest'),
        h('dd', {}, t.image_digest ? h('code', { class: 'wrap' }, t.image_digest) : '—'),
        h('dt', {}, 'Exit code'),
        h('dd', { id: 'exit-code' }, t.exit_code === null || t.exit_code === undefined ? '—' : String(t.exit_code)),
        h('dt', {}, 'Attempt'),
        h('dd', {}, `${attempt} of ${t.attempt}${t.task.retries ? ` (retries: ${t.task.retries})` : ''}`),
        h('dt', {}, 'Took'),
        h('dd', {}, t.started ? took(t.started, t.ended) : '—'),
        t.status_reason ? [h('dt', {}, 'Reason'), h('dd', {}, reasonText(t.status_reason))] : null,
      ),
      attempts,
    );
    if (!shownTask || restart || !parts.task.contains(logBox)) {
      replace(
        parts.task,
        section(
          null,
          facts,
          h(
            'div',
            { class: 'toolbar small' },
            h('h3', {}, 'Log'),
            logStatus,
            h('span', { class: 'spacer' }),
            h('label', { for: 'follow' }, follow, ' Follow'),
            h('a', { href: logUrl, download: `${t.task_id}-${runId}-${attempt}.log`, class: 'button small' }, 'Download raw'),
          ),
          logBox,
        ),
      );
    }
    if (restart) startLog(t, attempt);
    shownTask = t.task_id;
    shownAttempt = attempt;
  };

  const startLog = (t, attempt) => {
    if (log) log.stop();
    const renderer = new AnsiRenderer(logBox);
    renderer.reset();
    if (boot.can.read_logs === false) {
      logStatus.textContent = 'Your token may not read task logs.';
      log = { stop() {}, needsRestart: () => false };
      return;
    }
    if (t.logs_expired) {
      logStatus.textContent = 'This log was removed by retention.';
      log = { stop() {}, needsRestart: () => false };
      return;
    }
    if (t.state === 'processing' || t.state === 'waiting') {
      logStatus.textContent = 'Waiting for the task to start…';
      log = { stop() {}, needsRestart: (now) => now.state === 'running' || now.state === 'complete' };
      return;
    }
    const live = t.state !== 'complete' && attempt === t.attempt;
    logStatus.textContent = live ? 'streaming…' : '';
    let ended = false;
    const path = `/namespaces/${enc(namespace)}/pipelines/${enc(id)}/runs/${runId}/tasks/${enc(t.task_id)}/logs?attempt=${attempt}${live ? '&follow=true' : ''}`;
    const current = stream(
      path,
      (chunk) => {
        renderer.push(chunk);
        if (renderer.trimmed) logStatus.textContent = 'older output is not shown here; download raw has all of it';
        scrollLog();
      },
      (error) => {
        ended = true;
        if (error) logStatus.textContent = `The log could not be read: ${error.message}`;
        else logStatus.textContent = live ? 'ended' : '';
        if (!error && !logBox.textContent) logBox.append(h('span', { class: 'muted' }, '(no output)'));
      },
    );
    log = {
      stop: () => current.stop(),
      // A stream that broke while the task still runs (the server restarted) starts again.
      needsRestart: (now) => ended && now.state !== 'complete' && live,
    };
  };

  const timelineItem = (event) => {
    const k = event.kind;
    let text;
    switch (k.type) {
      case 'run_queued':
        text = 'Run queued';
        break;
      case 'run_started':
        text = 'Run started';
        break;
      case 'run_cancel_requested':
        text = k.task_id ? `Cancel of ${k.task_id} requested` : 'Cancel requested';
        break;
      case 'run_completed':
        text = `Run ${k.status}${k.status_reason ? `: ${reasonText(k.status_reason)}` : ''}`;
        break;
      case 'task_changed':
        text = `${k.task_id} ${k.state === 'complete' ? k.status : k.state}${k.attempt > 1 ? ` (attempt ${k.attempt})` : ''}${
          k.exit_code !== null && k.exit_code !== undefined && k.state === 'complete' ? `, exit ${k.exit_code}` : ''
        }`;
        break;
      case 'task_exec_started':
        text = `${k.by} ran a command in ${k.task_id}`;
        break;
      default:
        text = k.type.replace(/_/g, ' ');
    }
    return h(
      'li',
      {},
      h('time', { datetime: new Date(event.emitted).toISOString() }, new Date(event.emitted).toLocaleTimeString()),
      ' ',
      text,
    );
  };

  await refresh();
  if (selected) document.title = `${selected} · Run #${runId} · Gofer`;
  const later = debounce(refresh, 120);
  followEvents({ namespace, pipeline: id, run: String(runId) }, (event) => {
    parts.timeline.append(timelineItem(event));
    later();
  });
  setInterval(tick, 1000);
}

/** The breadcrumb trail: [[label, href or null], …]. */
function crumbsNav(crumbs) {
  return h(
    'nav',
    { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    crumbs.map(([label, href], i) => [
      i ? h('span', { class: 'sep', 'aria-hidden': 'true' }, '›') : null,
      href ? h('a', { href }, label) : h('span', { 'aria-current': 'page' }, label),
    ]),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Extensions

async function extensionsPage() {
  const list = h('div', {}, h('p', { class: 'loading' }, 'Loading…'));
  frame([['Extensions']], h('h1', {}, 'Extensions'), section(null, list));
  const draw = async () => {
    let extensions;
    try {
      extensions = (await api('GET', '/extensions')).extensions;
    } catch (e) {
      replace(list, problem(e));
      return;
    }
    if (!extensions.length) {
      replace(list, h('p', { class: 'empty' }, 'No extensions installed: gofer extension install ID IMAGE'));
      return;
    }
    const subscriptions = await Promise.all(
      extensions.map((x) =>
        api('GET', `/extensions/${enc(x.id)}/subscriptions`)
          .then((r) => r.subscriptions)
          .catch(() => []),
      ),
    );
    replace(
      list,
      extensions.map((x, i) =>
        h(
          'article',
          { class: 'extension', 'data-extension': x.id },
          h(
            'div',
            { class: 'toolbar small' },
            h('h2', {}, x.id),
            badge(x.enabled ? x.state : 'disabled'),
            h('span', { class: 'pill muted' }, x.kind),
            x.image ? h('code', {}, x.image) : null,
            h('span', { class: 'spacer' }),
            h('span', { class: 'muted' }, `${x.restarts} restart(s)`),
          ),
          x.problem ? h('p', { class: 'problem' }, x.problem) : null,
          subscriptions[i].length
            ? table({}, ['Pipeline', 'Label', 'Settings', 'Last fired', 'Next'], subscriptions[i].map((sub) =>
                    h(
                      'tr',
                      {},
                      h('td', {}, h('a', { href: pipelinePath(sub.namespace_id, sub.pipeline_id) }, `${sub.namespace_id}/${sub.pipeline_id}`)),
                      h('td', {}, sub.label, sub.enabled ? null : h('span', { class: 'pill muted' }, 'disabled')),
                      h('td', {}, h('code', {}, Object.entries(sub.settings).map(([k, v]) => `${k}=${v}`).join(' '))),
                      h('td', {}, time(sub.last_fired)),
                      h('td', {}, sub.next_fire ? time(sub.next_fire) : '—'),
                    ),
                  ))
            : h('p', { class: 'muted' }, 'No subscriptions.'),
        ),
      ),
    );
  };
  await draw();
  const later = debounce(draw, 300);
  followEvents({ tail: '0' }, (event) => {
    if (event.kind.type.startsWith('extension_')) later();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Events

function describeEvent(kind) {
  const where = [];
  if (kind.namespace_id && kind.pipeline_id) {
    where.push(h('a', { href: pipelinePath(kind.namespace_id, kind.pipeline_id) }, `${kind.namespace_id}/${kind.pipeline_id}`));
  } else if (kind.namespace_id) {
    where.push(kind.namespace_id);
  }
  if (kind.run_id) {
    const href = kind.task_id
      ? taskPath(kind.namespace_id, kind.pipeline_id, kind.run_id, kind.task_id)
      : runPath(kind.namespace_id, kind.pipeline_id, kind.run_id);
    where.push(' ', h('a', { href }, `#${kind.run_id}${kind.task_id ? ` ${kind.task_id}` : ''}`));
  }
  if (kind.extension_id) where.push(kind.extension_id);
  const details = [];
  for (const key of ['version', 'state', 'status', 'exit_code', 'to_version', 'strategy', 'stage', 'live_version', 'maintenance', 'problem', 'reason']) {
    if (kind[key] !== undefined && kind[key] !== null && kind[key] !== '') details.push(`${key.replace(/_/g, ' ')} ${kind[key]}`);
  }
  if (kind.status_reason) details.push(reasonText(kind.status_reason));
  return { where, details: details.join(', ') };
}

async function eventsPage() {
  const events = table({ class: 'events' }, ['#', 'When', 'What', 'Where', 'Details'], []);
  const body = events.tBodies[0];
  const filter = h('input', { type: 'search', id: 'event-filter', placeholder: 'Filter', 'aria-label': 'Filter events' });
  const empty = h('p', { class: 'empty' }, 'Waiting for events… Start a run (gofer run start PIPELINE) to see some.');
  frame(
    [['Events']],
    h('div', { class: 'toolbar' }, h('h1', {}, 'Events'), h('span', { class: 'spacer' }), filter),
    section(
      null,
      empty,
      events,
    ),
  );
  const matches = (tr) => {
    const words = filter.value.toLowerCase().trim();
    return words === '' || tr.textContent.toLowerCase().includes(words);
  };
  filter.addEventListener('input', () => {
    for (const tr of body.children) tr.hidden = !matches(tr);
  });
  followEvents({ tail: '200' }, (event) => {
    empty.hidden = true;
    const { where, details } = describeEvent(event.kind);
    const tr = h(
      'tr',
      { 'data-event': event.id },
      h('td', { class: 'muted' }, String(event.id)),
      h('td', {}, h('time', { datetime: new Date(event.emitted).toISOString(), title: new Date(event.emitted).toLocaleString() }, new Date(event.emitted).toLocaleTimeString())),
      h('td', {}, event.kind.type.replace(/_/g, ' ')),
      h('td', {}, where),
      h('td', { class: 'muted' }, details),
    );
    tr.hidden = !matches(tr);
    body.prepend(tr);
    while (body.children.length > 500) body.lastChild.remove();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Errors and start

function errorPage() {
  const hint =
    boot.status === 404 && boot.namespace
      ? h('p', {}, 'Check the name in the address, or deploy the pipeline with ', h('code', {}, 'gofer up DIR'), '.')
      : null;
  frame(
    [],
    section(
      boot.page === 'not_found' ? 'Not found' : 'Cannot show this page',
      h('p', { class: 'problem', role: 'alert', id: 'error' }, boot.error),
      hint,
      h('p', {}, h('a', { href: '/' }, 'Back to the pipelines')),
    ),
  );
}

const pages = {
  dashboard: dashboardPage,
  pipeline: pipelinePage,
  run: runPage,
  task: runPage,
  extensions: extensionsPage,
  events: eventsPage,
};

if (boot.error || !pages[boot.page]) {
  errorPage();
} else {
  pages[boot.page]().catch((e) => {
    console.error(e);
    frame([], section('Something went wrong', problem(e), h('p', {}, h('a', { href: location.pathname }, 'Reload'))));
  });
}
