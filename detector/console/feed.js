// The live alert feed: the recent alerts, then Server-Sent Events read with
// fetch() (EventSource cannot send the Authorization header), resumed with
// Last-Event-ID after a drop; polling GET /v1/alerts?since= while the stream
// is down. Counts and triage of known alerts are refreshed now and then
// (a repeat of an alert raises its count without a new stream event).

import { api, authHeaders, ApiError, session } from './api.js';

const INITIAL = 2000;      // alerts loaded at start
const KEEP = 10000;        // alerts kept in memory at most
const RETRY_MS = 2000;
const REFRESH_MS = 30000;

export const feed = {
  byId: new Map(),
  lastSeq: 0,
  loaded: false,
  live: 'idle', // idle | connecting | live | reconnecting | polling
};

const listeners = new Set();
const liveListeners = new Set();

/** fn({added: [alert], updated: [alert], reset: bool}) */
export function onFeed(fn) { listeners.add(fn); return () => listeners.delete(fn); }
export function onLive(fn) { liveListeners.add(fn); fn(feed.live); }

function setLive(state) {
  if (feed.live === state) return;
  feed.live = state;
  for (const fn of liveListeners) fn(state);
}

function notify(change) {
  for (const fn of listeners) {
    try { fn(change); } catch (e) { console.error(e); }
  }
}

/** Merge alerts (from the list, the stream or a refresh). */
export function ingest(list, { fromRefresh = false } = {}) {
  const added = [];
  const updated = [];
  for (const a of list) {
    if (!a || typeof a.id !== 'string') continue;
    if (typeof a.seq === 'number' && a.seq > feed.lastSeq) feed.lastSeq = a.seq;
    const old = feed.byId.get(a.id);
    if (!old) {
      feed.byId.set(a.id, a);
      added.push(a);
      continue;
    }
    // The stream carries no triage: keep what we know unless the answer has one.
    const triage = a.triage !== undefined ? a.triage : (fromRefresh ? undefined : old.triage);
    const changed = old.count !== a.count || old.last_time !== a.last_time
      || JSON.stringify(old.triage ?? null) !== JSON.stringify(triage ?? null);
    if (changed) {
      const merged = { ...old, ...a };
      if (triage === undefined) delete merged.triage; else merged.triage = triage;
      feed.byId.set(a.id, merged);
      updated.push(merged);
    }
  }
  if (feed.byId.size > KEEP) {
    const oldest = [...feed.byId.values()].sort((x, y) => x.seq - y.seq).slice(0, feed.byId.size - KEEP);
    for (const a of oldest) feed.byId.delete(a.id);
  }
  if (added.length || updated.length) notify({ added, updated });
}

/** After a triage change here: the alert's new triage. */
export function setTriage(id, triage) {
  const a = feed.byId.get(id);
  if (!a) return;
  const merged = { ...a, triage };
  feed.byId.set(id, merged);
  notify({ added: [], updated: [merged] });
}

let running = false;
let controller = null;
let refreshTimer = 0;

export async function startFeed() {
  if (running) return;
  running = true;
  setLive('connecting');
  try {
    const list = await api(`/v1/alerts?limit=${INITIAL}`);
    ingest(list || [], { fromRefresh: true });
  } catch (e) {
    // shown in #status by api()
  }
  feed.loaded = true;
  notify({ added: [], updated: [], reset: true });
  refreshTimer = setInterval(refresh, REFRESH_MS);
  loop();
}

export function stopFeed() {
  running = false;
  clearInterval(refreshTimer);
  if (controller) controller.abort();
  setLive('idle');
}

async function refresh() {
  if (!running || document.hidden) return;
  const n = Math.min(INITIAL, Math.max(100, feed.byId.size));
  try {
    const list = await api(`/v1/alerts?limit=${n}`, { quiet: true });
    ingest(list || [], { fromRefresh: true });
  } catch { /* the stream loop reports problems */ }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function loop() {
  let failures = 0;
  while (running) {
    controller = new AbortController();
    try {
      await streamOnce(controller.signal);
      failures = 0;
    } catch (e) {
      if (!running) return;
      if (e instanceof ApiError && e.status === 401) { running = false; setLive('idle'); return; }
      if (e && e.name === 'AbortError') return;
      failures += 1;
    }
    if (!running) return;
    setLive(failures >= 2 ? 'polling' : 'reconnecting');
    await poll();
    await sleep(failures >= 3 ? RETRY_MS * 3 : RETRY_MS);
  }
}

async function poll() {
  try {
    let more = true;
    while (more && running) {
      const list = await api(`/v1/alerts?since=${feed.lastSeq}&limit=1000`, { quiet: true });
      ingest(list || []);
      more = Array.isArray(list) && list.length === 1000;
    }
  } catch { /* try again later */ }
}

async function streamOnce(signal) {
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (feed.lastSeq) headers.set('Last-Event-ID', String(feed.lastSeq));
  const res = await fetch('/v1/alerts/stream', { headers, signal, cache: 'no-store', credentials: 'omit' });
  if (!res.ok || !res.body) {
    let msg = `${res.status}`;
    try { msg = (await res.json()).error || msg; } catch { /* ignore */ }
    throw new ApiError(res.status, msg, '/v1/alerts/stream');
  }
  setLive('live');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let batch = [];
  let flushQueued = false;
  const flush = () => { flushQueued = false; const b = batch; batch = []; if (b.length) ingest(b); };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    // Frames end with a blank line; lines end with \n, \r\n or \r.
    if (buf.includes('\r')) buf = buf.replace(/\r\n|\r(?!$)/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const a = parseFrame(frame);
      if (a) batch.push(a);
    }
    if (batch.length && !flushQueued) { flushQueued = true; setTimeout(flush, 50); }
  }
  flush();
}

function parseFrame(frame) {
  const data = [];
  let id = null;
  for (const line of frame.split('\n')) {
    if (!line || line[0] === ':') continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let v = c < 0 ? '' : line.slice(c + 1);
    if (v[0] === ' ') v = v.slice(1);
    if (field === 'data') data.push(v);
    else if (field === 'id') id = v;
  }
  if (!data.length) return null;
  try {
    const a = JSON.parse(data.join('\n'));
    if (typeof a.seq !== 'number' && id && /^\d+$/.test(id)) a.seq = Number(id);
    return a;
  } catch {
    return null;
  }
}

export function canTriage() { return session.may('triage'); }
