// fieldgate status page.
//
// One EventSource on /api/events: a `trend` event first (each tag's last
// minutes), then `status` events (the /api/status document) every second
// or so, and at once when an alarm or work order changes. Devices and tags
// are built once and updated in place; alarm and work-order lists are
// rebuilt only when they change, so a button is never replaced under a
// finger. Every text from the gateway goes in through textContent.
//
// Acknowledge and shelve POST to /api/alarms/{rule}/{ack|shelve} with the
// bearer token, asked for once and kept in sessionStorage (this tab only).
// A writable tag's Write… button opens a dialog in three steps (the value,
// checked against the tag's limits; a confirmation; the result) that POSTs
// to /api/tags/{device}/{tag}/write with the same token.

'use strict';

const TOKEN_KEY = 'fieldgate-token';
// No status for this long: the page says it is stale.
const STALE_MS = 5000;

const page = {
  status: null,
  lastUpdate: 0,
  step: 5, // seconds per trend point
  points: 60,
  endStep: null, // step number of the last trend point
  trend: new Map(), // "device\u0000tag" -> array of numbers or null
  devices: new Map(), // device name -> { card, rows: Map(tag -> row parts) }
  alarmsKey: null,
  workOrdersKey: null,
  parkedKey: null,
  pending: new Set(), // rules with a request on its way
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// ---- formatting -----------------------------------------------------------

// A number as typed or configured (a limit, a value to write).
function fmtValue(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toPrecision(6)));
  }
  return String(v);
}

// A reading (a tag's value, an alarm's value and limit) with the precision
// of its tag, as `fieldgate read` and the work-order texts show it
// (src/precision.rs): `decimals` digits after the point when the status
// gives them (21.4 for a tenth-degree register, never 21.400000000000002),
// else at most SIGNIFICANT significant digits, trailing zeros dropped.
// The status document keeps every value in full.
const SIGNIFICANT = 4;

function fmtReading(v, decimals) {
  if (typeof v !== 'number') return fmtValue(v);
  if (!isFinite(v)) return String(v);
  return typeof decimals === 'number' ? fixed(v, Math.min(decimals, 9)) : significant(v, SIGNIFICANT);
}

// toFixed rounds halves away from zero (2.5 → 3), as the gateway does;
// no "-0.0".
function fixed(v, d) {
  if (Math.abs(v) >= 1e21) return exponent(v, SIGNIFICANT);
  const t = v.toFixed(d);
  return /^-[0.]*$/.test(t) ? t.slice(1) : t;
}

function trimZeros(t) {
  return t.includes('.') ? t.replace(/\.?0+$/, '') : t;
}

function exponent(v, n) {
  const [mantissa, e] = v.toExponential(n - 1).split('e');
  return trimZeros(mantissa) + 'e' + e.replace('+', '');
}

function significant(v, n) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-5 || a >= 1e21) return exponent(v, n);
  // The power of ten after rounding to n digits (9999.6 is 1.000e4).
  const e = Number(v.toExponential(n - 1).split('e')[1]);
  const t = trimZeros(fixed(v, Math.min(20, Math.max(0, n - 1 - e))));
  return t === '-0' ? '0' : t;
}

// Commas between thousands: 1,850.
function grouped(t) {
  const m = /^(-?)(\d+)(.*)$/.exec(t);
  if (!m || m[2].length < 4) return t;
  return m[1] + m[2].replace(/\B(?=(\d{3})+(?!\d))/g, ',') + m[3];
}

// Hours as a running-hours counter reads: 1,850 h, 12.5 h; below an hour
// minutes or seconds (a demo's meter: 30 s, not 0.0083 h).
function fmtHours(h) {
  const a = Math.abs(h);
  if (!isFinite(h) || h === 0 || a >= 1) {
    const n = a >= 100 ? grouped(fixed(h, 0)) : a >= 1 ? fixed(h, 1) : significant(h, 2);
    return n + ' h';
  }
  const s = Math.round(h * 3600);
  if (Math.abs(s) < 60) return s + ' s';
  const min = Math.round(s / 60);
  return Math.abs(min) < 60 ? min + ' min' : '1.0 h';
}

// A meter's amount in its own unit: hours, or a count (1,234).
function fmtMeter(unit, x) {
  if (unit === 'h') return fmtHours(x);
  if (unit === 'count') return grouped(fixed(x, 0));
  return significant(x, SIGNIFICANT) + (unit ? ' ' + unit : '');
}

function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

function since(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  if (isNaN(t)) return null;
  const now = page.status ? Date.parse(page.status.generated_at) : Date.now();
  return (now - t) / 1000;
}

const STATE_TEXT = {
  active_unacked: 'Active, not acknowledged',
  active_acked: 'Active, acknowledged',
  returned_unacked: 'Returned to normal, not acknowledged',
  shelved: 'Shelved',
};

// ---- header ---------------------------------------------------------------

function renderHeader(s) {
  const g = s.gateway;
  $('gw-id').textContent = g.id;
  $('gw-site').textContent = g.site;
  document.title = g.id + ' · fieldgate';
  $('version').textContent = g.version;
  const hash = $('config-hash');
  hash.textContent = g.config_hash.slice(0, 12);
  hash.title = g.config_hash;
  $('uptime').textContent = fmtAge(g.uptime_s);

  // Timestamps made while the kernel does not report the clock
  // synchronised (a gateway without a real-time clock, before NTP) may be
  // wrong; durations are not affected (they run on a monotonic clock).
  const clock = $('clock');
  if (g.clock_synchronised === true) {
    clock.textContent = 'synchronised';
    clock.className = 'good';
    clock.title = '';
  } else if (g.clock_synchronised === false) {
    clock.textContent = 'not synchronised';
    clock.className = 'bad';
    clock.title = 'NTP has not set the clock: timestamps may be wrong';
  } else {
    clock.textContent = 'unknown';
    clock.className = '';
    clock.title = '';
  }

  const mqtt = $('mqtt');
  mqtt.textContent = s.mqtt.connected ? 'connected' : 'disconnected';
  mqtt.className = s.mqtt.connected ? 'good' : 'bad';
  mqtt.title = s.mqtt.last_error || '';

  const outbox = $('outbox');
  if (s.outbox && s.outbox.state === 'degraded') {
    // The disk cannot take the outbox: it is held in memory.
    const o = s.outbox;
    outbox.textContent = 'store degraded (' + o.fault.replace('_', ' ') + ') for ' +
      fmtAge(o.degraded_s) + ': ' + o.held + ' held in memory' +
      (o.held_evicted > 0 ? ', ' + o.held_evicted + ' evicted' : '');
    outbox.title = o.reason || '';
    outbox.className = 'bad';
  } else if (s.outbox) {
    const n = s.outbox.messages;
    outbox.textContent =
      n === 0 ? 'empty' : n + ' waiting, oldest ' + fmtAge(s.outbox.oldest_age_s);
    outbox.title = '';
    outbox.className = n > 0 && s.outbox.oldest_age_s > 60 ? 'bad' : '';
  } else {
    outbox.textContent = 'store not answering';
    outbox.className = 'bad';
  }
}

// ---- alarms ---------------------------------------------------------------

function renderAlarms(s) {
  const actions = s.gateway.actions === true;
  $('actions-hint').hidden = actions;
  const key = JSON.stringify([s.alarms, actions, [...page.pending]]);
  $('alarm-count').textContent = s.alarms.length ? '(' + s.alarms.length + ')' : '';
  if (key === page.alarmsKey) {
    // Only the ages move.
    for (const a of s.alarms) {
      const age = document.querySelector('.alarm[data-rule="' + CSS.escape(a.rule) + '"] .age');
      if (age) age.textContent = fmtAge(since(a.since));
    }
    return;
  }
  page.alarmsKey = key;
  const list = $('alarms');
  list.replaceChildren();
  if (s.alarms.length === 0) {
    list.append(el('p', 'empty', 'No alarms.'));
    return;
  }
  for (const a of s.alarms) list.append(alarmCard(a, actions));
}

function alarmCard(a, actions) {
  const card = el('article', 'card alarm');
  card.dataset.rule = a.rule;
  card.dataset.state = a.state;
  card.dataset.priority = a.priority;

  const head = el('div', 'head');
  head.append(el('span', 'rule', a.rule));
  head.append(el('span', 'badge', a.priority));
  head.append(el('span', 'state', STATE_TEXT[a.state] || a.state));
  if (a.chattering) head.append(el('span', 'badge chatter', 'chattering'));
  card.append(head);

  const detail = el('div', 'detail');
  if (a.value !== null && a.value !== undefined) {
    detail.append('value ');
    detail.append(el('b', null, fmtReading(a.value, a.decimals)));
    if (a.limit !== null && a.limit !== undefined) {
      detail.append(' · limit ');
      detail.append(el('b', null, fmtReading(a.limit, a.decimals)));
    }
    detail.append(' · ');
  }
  detail.append('since ' + fmtTime(a.since) + ' (');
  detail.append(el('span', 'age', fmtAge(since(a.since))));
  detail.append(')');
  if (a.shelved_until) detail.append(' · shelved until ' + fmtTime(a.shelved_until));
  card.append(detail);

  if (actions) {
    const buttons = el('div', 'actions');
    const busy = page.pending.has(a.rule);
    if (a.state === 'active_unacked' || a.state === 'returned_unacked') {
      const ack = el('button', 'primary ack', 'Acknowledge');
      ack.type = 'button';
      ack.disabled = busy;
      ack.addEventListener('click', () => request(a.rule, 'ack', {}));
      buttons.append(ack);
    }
    if (a.state === 'shelved') {
      const un = el('button', 'unshelve', 'Unshelve');
      un.type = 'button';
      un.disabled = busy;
      un.addEventListener('click', () => request(a.rule, 'shelve', { unshelve: true }));
      buttons.append(un);
    } else {
      const sh = el('button', 'shelve', 'Shelve…');
      sh.type = 'button';
      sh.disabled = busy;
      sh.addEventListener('click', () => askShelve(a.rule));
      buttons.append(sh);
    }
    card.append(buttons);
  }
  return card;
}

// ---- work orders ----------------------------------------------------------

function renderWorkOrders(s) {
  const key = JSON.stringify(s.work_orders);
  $('wo-count').textContent = s.work_orders.length ? '(' + s.work_orders.length + ')' : '';
  if (key === page.workOrdersKey) return;
  page.workOrdersKey = key;
  const list = $('workorders');
  list.replaceChildren();
  if (s.work_orders.length === 0) {
    list.append(el('p', 'empty', 'No open work orders.'));
    return;
  }
  for (const w of s.work_orders) {
    const card = el('article', 'card workorder');
    card.dataset.id = w.id;
    card.dataset.status = w.status;
    const head = el('div', 'head');
    head.append(el('span', 'title-text', w.title));
    head.append(el('span', 'badge', w.priority));
    head.append(el('span', 'status', w.status.replace('_', ' ')));
    card.append(head);
    const parts = [w.type, 'asset ' + w.asset, 'raised ' + fmtTime(w.created_at)];
    if (w.occurrences > 1) parts.push(w.occurrences + ' occurrences');
    if (w.cmms_ref) parts.push('CMMS ' + w.cmms_ref);
    parts.push(w.id);
    card.append(el('div', 'detail', parts.join(' · ')));
    list.append(card);
  }
}

// ---- CMMS connectors ------------------------------------------------------

// Shown only when connectors are configured. The connectors' line is
// rebuilt at each status (its ages move); the parked deliveries only when
// they change, so their error text can be selected and copied.
function renderCmms(s) {
  const connectors = s.cmms || [];
  $('cmms-section').hidden = connectors.length === 0;
  if (connectors.length === 0) return;
  let parkedNow = 0;
  for (const c of connectors) parkedNow += c.parked || 0;
  $('cmms-count').textContent = parkedNow ? '(' + parkedNow + ' parked)' : '';

  const box = $('cmms');
  box.replaceChildren();
  for (const c of connectors) box.append(connectorCard(c));

  const parked = [];
  for (const c of connectors) {
    for (const p of c.parked_deliveries) parked.push([c, p]);
  }
  parked.sort((a, b) => (a[1].parked_at < b[1].parked_at ? 1 : a[1].parked_at > b[1].parked_at ? -1 : 0));
  const key = JSON.stringify(parked.map(([c, p]) => [c.name, p.id, p.error]));
  const shown = parked.length;
  $('parked-hint').hidden = shown === 0;
  $('parked-more').textContent =
    parkedNow > shown ? shown + ' of ' + parkedNow + ' shown; fieldgate workorders lists them all.' : '';
  if (key === page.parkedKey) return;
  page.parkedKey = key;
  const list = $('parked');
  list.replaceChildren();
  for (const [c, p] of parked) list.append(parkedCard(c, p));
}

function connectorCard(c) {
  const card = el('div', 'card connector');
  card.dataset.name = c.name;
  const untried = !c.reachable && !c.last_error && c.delivered === 0 && c.retries === 0 && c.parked_total === 0;
  const state = untried ? 'untried' : c.reachable ? 'reachable' : 'unreachable';
  card.dataset.state = state;
  const head = el('div', 'head');
  head.append(el('b', null, c.name));
  head.append(el('span', 'muted', c.kind));
  head.append(el('span', 'cstate', untried ? 'no exchange yet' : c.reachable ? 'reachable' : 'not reachable'));
  card.append(head);
  const parts = [];
  if (c.pending === null) {
    parts.push('queue unknown (store not answering)');
  } else {
    parts.push(c.pending === 0 ? 'nothing waiting' : c.pending + ' waiting, oldest ' + fmtAge(c.oldest_pending_age_s));
    parts.push(c.parked + ' parked');
  }
  parts.push(c.delivered + ' delivered');
  if (c.retries) parts.push(c.retries + ' retries');
  card.append(el('div', 'detail', parts.join(' · ')));
  if (c.last_error && !c.reachable) card.append(el('div', 'error', c.last_error));
  else if (c.last_error) card.title = 'last error: ' + c.last_error;
  return card;
}

function parkedCard(c, p) {
  const card = el('article', 'card parked');
  card.dataset.connector = c.name;
  card.dataset.id = String(p.id);
  const head = el('div', 'head');
  const what = p.work_order ? p.work_order.title : p.kind === 'meter' ? 'meter ' + p.key : 'work order ' + p.key;
  head.append(el('span', 'title-text', what));
  head.append(el('span', 'badge', 'parked'));
  head.append(el('span', 'muted', c.name + ' · ' + p.event));
  card.append(head);
  card.append(el('div', 'error', p.error));
  const parts = ['refused ' + fmtTime(p.parked_at)];
  if (p.work_order) parts.push('asset ' + p.work_order.asset, p.work_order.id);
  card.append(el('div', 'detail', parts.join(' · ')));
  return card;
}

// ---- Sparkplug edge node --------------------------------------------------

// Shown only when [sparkplug] is on; rebuilt at each status (small).
function renderSparkplug(s) {
  const sp = s.sparkplug;
  $('sparkplug-section').hidden = !sp;
  const box = $('sparkplug');
  if (!sp) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(edgeNodeCard(sp));
}

function edgeNodeCard(sp) {
  const card = el('div', 'card connector edge-node');
  let state;
  let text;
  if (!sp.connected) {
    state = 'disconnected';
    text = 'not connected';
  } else if (sp.online) {
    state = 'online';
    text = 'online';
  } else if (sp.primary_host_id !== null) {
    // No births until the host's STATE says online; rows wait meanwhile.
    state = 'waiting';
    text = 'waiting for primary host ' + sp.primary_host_id;
  } else {
    state = 'connecting';
    text = 'connected, births pending';
  }
  card.dataset.state = state;
  const head = el('div', 'head');
  head.append(el('b', null, sp.group_id + ' / ' + sp.edge_node_id));
  head.append(el('span', 'cstate', text));
  card.append(head);
  const parts = [];
  if (sp.bd_seq !== null) parts.push('bdSeq ' + sp.bd_seq);
  if (sp.outbox_messages === null) parts.push('rows waiting unknown (store not answering)');
  else parts.push(sp.outbox_messages === 0 ? 'nothing waiting' : sp.outbox_messages + ' rows waiting');
  parts.push('published ' + sp.published + ' live, ' + sp.historical + ' historical');
  card.append(el('div', 'detail', parts.join(' · ')));
  card.title = [
    sp.sessions + ' sessions',
    sp.births + ' births',
    sp.rebirth_requests + ' rebirth requests',
    sp.confirmed + ' confirmed',
    sp.dropped + ' dropped',
    sp.held + ' held for the next session',
    sp.inbound_refused + ' inbound refused',
  ].join(' · ');
  return card;
}

// ---- devices and tags -----------------------------------------------------

function renderLinks(s) {
  const box = $('links');
  box.replaceChildren();
  for (const l of s.links || []) {
    const chip = el('span', 'link');
    chip.dataset.label = l.label;
    chip.dataset.connected = String(l.connected);
    chip.append(el('b', null, l.label + ' '));
    const serial = l.label.startsWith('bus:');
    chip.append(el('span', 'lstate', l.connected ? (serial ? 'open' : 'connected') : serial ? 'not open' : 'not connected'));
    const n = l.devices.length;
    let text = ' · ' + n + (n === 1 ? ' device' : ' devices');
    if (l.connect_failures) text += ' · ' + l.connect_failures + ' failed connects';
    chip.append(text);
    chip.title = l.devices.join(', ') + (l.last_success ? '; last good poll ' + fmtTime(l.last_success) : '');
    box.append(chip);
  }
}

function renderDevices(s) {
  renderLinks(s);
  $('device-count').textContent = '(' + s.devices.length + ')';
  const box = $('devices');
  const seen = new Set();
  s.devices.forEach((d, i) => {
    seen.add(d.name);
    let view = page.devices.get(d.name);
    if (!view) {
      view = deviceView(d);
      page.devices.set(d.name, view);
    }
    // Keep config order.
    if (box.children[i] !== view.card) box.insertBefore(view.card, box.children[i] || null);
    updateDevice(view, d);
  });
  for (const [name, view] of page.devices) {
    if (!seen.has(name)) {
      view.card.remove();
      page.devices.delete(name);
    }
  }
}

function deviceView(d) {
  const card = el('article', 'card device');
  card.dataset.name = d.name;
  const head = el('div', 'head');
  head.append(el('span', 'name', d.name));
  const state = el('span', 'dstate');
  head.append(state);
  card.append(head);
  const detail = el('div', 'detail');
  card.append(detail);
  const error = el('div', 'error');
  card.append(error);
  const table = el('table', 'tags');
  const body = el('tbody');
  table.append(body);
  card.append(table);
  return { card, state, detail, error, body, rows: new Map() };
}

function updateDevice(view, d) {
  view.card.dataset.state = d.state;
  if (d.state === 'failing') {
    view.state.textContent = 'failing since ' + fmtTime(d.since) + ' (' + fmtAge(since(d.since)) + ')';
  } else if (d.state === 'polling') {
    view.state.textContent = 'polling';
  } else {
    view.state.textContent = 'not polled yet';
  }
  const parts = [d.link];
  if (d.last_response_ms !== null) parts.push('answers in ' + fmtValue(Number(d.last_response_ms.toFixed(1))) + ' ms');
  if (d.last_success) parts.push('last good poll ' + fmtTime(d.last_success));
  parts.push(d.polls_ok + ' polls ok, ' + d.polls_failed + ' failed');
  view.detail.textContent = parts.join(' · ');
  view.error.textContent = d.last_error || '';
  view.error.hidden = !d.last_error;

  const seen = new Set();
  d.tags.forEach((t, i) => {
    seen.add(t.name);
    let row = view.rows.get(t.name);
    if (!row) {
      row = tagRow(t);
      view.rows.set(t.name, row);
    }
    if (view.body.children[i] !== row.tr) view.body.insertBefore(row.tr, view.body.children[i] || null);
    updateTag(row, d.name, t);
  });
  for (const [name, row] of view.rows) {
    if (!seen.has(name)) {
      row.tr.remove();
      view.rows.delete(name);
    }
  }
}

function tagRow(t) {
  const tr = el('tr', 'tag');
  tr.dataset.tag = t.name;
  const name = el('td', 'tname', t.name);
  const value = el('td', 'value');
  const number = el('span', 'number');
  const unit = el('span', 'unit', t.unit || '');
  const quality = el('span', 'quality');
  value.append(number, unit, quality);
  const spark = el('td', 'spark');
  const act = el('td', 'act');
  tr.append(name, value, spark, act);
  return { tr, number, quality, spark, act, drawn: null, writable: null };
}

function updateTag(row, device, t) {
  const good = t.quality === 'good';
  row.tr.classList.toggle('bad', t.quality !== null && !good);
  row.tr.dataset.quality = t.quality || 'none';
  row.number.textContent = good ? fmtReading(t.value, t.decimals) : t.quality === null ? '–' : '✕';
  row.quality.textContent = t.quality && !good ? t.quality.replace('bad:', 'bad: ') : '';
  // The button is made once and kept while the tag stays writable, so it
  // is never replaced under a finger.
  const writable = page.status.gateway.actions === true && !!t.write;
  if (writable !== row.writable) {
    row.writable = writable;
    row.act.replaceChildren();
    if (writable) {
      const b = el('button', 'write', 'Write…');
      b.type = 'button';
      b.setAttribute('aria-label', 'Write ' + device + ' / ' + t.name);
      b.addEventListener('click', () => openWrite(device, t.name));
      row.act.append(b);
    }
  }
  if (writing.device === device && writing.tag === t.name && $('write-dialog').open) showNow(t);
  const points = page.trend.get(device + '\u0000' + t.name);
  const key = points ? points.join(',') : '';
  if (key !== row.drawn) {
    row.drawn = key;
    row.spark.replaceChildren(points ? sparkline(points, t.decimals) : '');
  }
}

// A small line of the last minutes; gaps where there was no good value.
// The line starts at the first point (at least a minute back), so a page
// opened just after the gateway started shows a line, not a tick.
function sparkline(all, decimals) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'sparkline');
  svg.setAttribute('viewBox', '0 0 100 26');
  svg.setAttribute('preserveAspectRatio', 'none');
  const firstPoint = all.findIndex((p) => p !== null);
  if (firstPoint < 0) return svg;
  const minimum = Math.ceil(60 / page.step);
  const points = all.slice(Math.max(0, Math.min(firstPoint, all.length - minimum)));
  const values = points.filter((p) => p !== null);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const x = (i) => (i * 100) / Math.max(1, points.length - 1);
  const y = (v) => 23 - ((v - lo) / (hi - lo)) * 20;
  let d = '';
  let pen = false;
  points.forEach((p, i) => {
    if (p === null) {
      pen = false;
      return;
    }
    d += (pen ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(p).toFixed(1);
    // A lone point still shows.
    const next = points[i + 1];
    if (!pen && (next === null || next === undefined)) d += x(i) > 97 ? 'h-3' : 'h3';
    pen = true;
  });
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  const title = document.createElementNS(ns, 'title');
  title.textContent =
    'last ' + fmtAge(points.length * page.step) + ': ' +
    fmtReading(Math.min(...values), decimals) + ' – ' + fmtReading(Math.max(...values), decimals);
  svg.append(title);
  return svg;
}

// ---- trends ---------------------------------------------------------------

function onTrend(doc) {
  page.step = doc.step_s;
  page.points = doc.points;
  page.endStep = Math.floor(Date.parse(doc.end) / 1000 / page.step);
  page.trend.clear();
  for (const [device, tags] of Object.entries(doc.devices)) {
    for (const [tag, points] of Object.entries(tags)) {
      page.trend.set(device + '\u0000' + tag, points.slice());
    }
  }
}

// Extends the lines with a status's values, in the step of its time.
function extendTrends(s) {
  const step = Math.floor(Date.parse(s.generated_at) / 1000 / page.step);
  if (page.endStep === null) page.endStep = step;
  const shift = Math.min(page.points, step - page.endStep);
  if (shift > 0) {
    for (const points of page.trend.values()) {
      points.splice(0, shift);
      for (let k = 0; k < shift; k++) points.push(null);
    }
    page.endStep = step;
  }
  if (step < page.endStep) return; // a clock that went back: wait for it
  for (const d of s.devices) {
    for (const t of d.tags) {
      const key = d.name + '\u0000' + t.name;
      let points = page.trend.get(key);
      if (!points) {
        points = new Array(page.points).fill(null);
        page.trend.set(key, points);
      }
      let v = t.value;
      if (typeof v === 'boolean') v = v ? 1 : 0;
      if (t.quality === 'good' && typeof v === 'number' && isFinite(v)) {
        points[points.length - 1] = v;
      }
    }
  }
}

// ---- the stream -----------------------------------------------------------

function onStatus(s) {
  page.status = s;
  page.lastUpdate = Date.now();
  document.body.classList.remove('stale');
  setLive('live', 'live');
  extendTrends(s);
  renderHeader(s);
  renderAlarms(s);
  renderWorkOrders(s);
  renderCmms(s);
  renderSparkplug(s);
  renderDevices(s);
  renderMeters(s);
}

function renderMeters(s) {
  $('meters-section').hidden = s.meters.length === 0;
  const list = $('meters');
  list.replaceChildren();
  for (const m of s.meters) {
    const card = el('div', 'card meter');
    card.dataset.name = m.name;
    card.dataset.due = String(m.due);
    // In the meter's own unit: "runtime 1,234 h · next service in 766 h".
    const amount = m.value === null ? '–' : fmtMeter(m.unit, m.value);
    let text = m.name + ': ' + m.measure + ' ' + amount;
    if (m.due) text += ' · service due';
    else if (m.next_due !== null && m.value !== null) {
      text += ' · next service in ' + fmtMeter(m.unit, Math.max(0, m.next_due - m.value));
    }
    card.textContent = text;
    list.append(card);
  }
}

function setLive(state, text) {
  const live = $('live');
  live.dataset.state = state;
  live.textContent = text;
}

function connect() {
  const events = new EventSource('api/events');
  events.addEventListener('trend', (e) => {
    try {
      onTrend(JSON.parse(e.data));
    } catch (err) {
      console.error('trend', err);
    }
  });
  events.addEventListener('status', (e) => {
    try {
      onStatus(JSON.parse(e.data));
    } catch (err) {
      console.error('status', err);
    }
  });
  events.addEventListener('error', () => {
    // The browser reconnects by itself (the server asks for 2 s).
    setLive('reconnecting', 'reconnecting…');
  });
}

setInterval(() => {
  if (page.lastUpdate && Date.now() - page.lastUpdate > STALE_MS) {
    document.body.classList.add('stale');
    setLive('stale', 'no update for ' + fmtAge((Date.now() - page.lastUpdate) / 1000));
  }
}, 1000);

// ---- actions --------------------------------------------------------------

let toastTimer = null;
function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
}

const TOKEN_WHY = $('token-why').textContent;

// Resolves with the token typed, or null when cancelled.
function askToken(why) {
  const dialog = $('token-dialog');
  const input = $('token-input');
  $('token-why').textContent = why || TOKEN_WHY;
  input.value = '';
  return new Promise((resolve) => {
    const done = (value) => {
      $('token-ok').onclick = null;
      $('token-cancel').onclick = null;
      input.onkeydown = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    $('token-ok').onclick = () => done(input.value.trim() || null);
    $('token-cancel').onclick = () => done(null);
    input.onkeydown = (e) => {
      if (e.key === 'Enter') done(input.value.trim() || null);
    };
    dialog.onclose = () => done(null);
    dialog.showModal();
    input.focus();
  });
}

function askShelve(rule) {
  const dialog = $('shelve-dialog');
  $('shelve-rule').textContent = rule;
  for (const b of dialog.querySelectorAll('button[data-duration]')) {
    b.onclick = () => {
      dialog.close();
      request(rule, 'shelve', { duration: b.dataset.duration });
    };
  }
  $('shelve-cancel').onclick = () => dialog.close();
  dialog.showModal();
}

async function request(rule, action, body) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!token) {
      token = await askToken(
        attempt === 0
          ? null
          : 'The gateway refused that token. Type the token of [http] token_file again.'
      );
      if (!token) return;
    }
    page.pending.add(rule);
    if (page.status) renderAlarms(page.status);
    let response;
    try {
      response = await fetch('api/alarms/' + encodeURIComponent(rule) + '/' + action, {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      done(rule);
      toast('The gateway did not answer: ' + err.message);
      return;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      done(rule);
      continue;
    }
    let answer = {};
    try {
      answer = await response.json();
    } catch (err) {
      answer = {};
    }
    if (response.ok) {
      sessionStorage.setItem(TOKEN_KEY, token);
      toast((action === 'ack' ? 'Acknowledged ' : body.unshelve ? 'Unshelved ' : 'Shelved ') + rule);
      // The button stays disabled until the new state arrives.
      setTimeout(() => done(rule), 3000);
    } else {
      done(rule);
      toast(answer.error || 'The gateway answered ' + response.status);
    }
    return;
  }
}

function done(rule) {
  page.pending.delete(rule);
  if (page.status) renderAlarms(page.status);
}

// ---- writes ---------------------------------------------------------------

// The dialog's tag; `seq` tells an answer whether the dialog it was asked
// from is still the one shown (else the answer goes to a toast).
const writing = { device: null, tag: null, unit: '', decimals: null, access: null, value: undefined, now: '', seq: 0 };

const WRITE_TOKEN_WHY =
  'Writing needs the gateway\'s token (the file named by [http] token_file). ' +
  'It is kept in this browser tab only.';
const TOKEN_REFUSED = 'The gateway refused that token. Type the token of [http] token_file again.';
const UNKNOWN_TEXT =
  'No answer from the device: the write may or may not have happened; it is not retried. ' +
  'Check the value.';

function findTag(device, tag) {
  if (!page.status) return null;
  const d = page.status.devices.find((x) => x.name === device);
  return d ? d.tags.find((x) => x.name === tag) || null : null;
}

// What the value input takes: bools and bits are on/off, strings text,
// every other type a number.
function writeKind(access) {
  if (access.type === 'bool' || access.type === 'bit') return 'bool';
  if (access.type === 'string') return 'text';
  return 'number';
}

function nowText(t) {
  if (t.quality === 'good') return fmtReading(t.value, t.decimals);
  if (t.quality === null) return 'not read yet';
  return 'unknown (' + t.quality + ')';
}

// The dialog's "Now …" line, kept live while the dialog is open.
function showNow(t) {
  $('write-now').textContent = nowText(t);
  $('write-unit').textContent = t.quality === 'good' && typeof t.value === 'number' ? t.unit || '' : '';
}

// A value with the tag's unit, for the sentences of the dialog: a value
// read from the tag (now, read back, before) with the tag's `decimals`
// (a number, or null for significant digits), one typed (no `decimals`
// given) as typed.
function withUnit(v, unit = writing.unit, decimals = undefined) {
  const text = decimals === undefined ? fmtValue(v) : fmtReading(v, decimals);
  return unit && typeof v === 'number' ? text + ' ' + unit : text;
}

function writeStep(step) {
  for (const s of ['edit', 'confirm', 'result']) $('write-' + s).hidden = s !== step;
}

function openWrite(device, tag) {
  const t = findTag(device, tag);
  if (!t || !t.write) {
    toast(device + ' / ' + tag + ' is not writable (any more)');
    return;
  }
  const access = t.write;
  writing.seq++;
  writing.device = device;
  writing.tag = tag;
  writing.unit = t.unit || '';
  writing.decimals = t.decimals;
  writing.access = access;
  writing.value = undefined;
  $('write-target').textContent = device + ' / ' + tag;
  showNow(t);

  const kind = writeKind(access);
  const limits = $('write-limits');
  limits.replaceChildren();
  const unit = writing.unit ? ' ' + writing.unit : '';
  const hasMin = typeof access.min === 'number';
  const hasMax = typeof access.max === 'number';
  if (hasMin && hasMax) limits.append(el('li', null, 'From ' + fmtValue(access.min) + ' to ' + fmtValue(access.max) + unit));
  else if (hasMin) limits.append(el('li', null, 'At least ' + fmtValue(access.min) + unit));
  else if (hasMax) limits.append(el('li', null, 'At most ' + fmtValue(access.max) + unit));
  else if (kind === 'number' && access.allowed.length === 0) {
    limits.append(el('li', null, 'No limits set: the register\'s range applies'));
  }
  if (access.allowed.length > 0) {
    limits.append(el('li', null, 'Only ' + access.allowed.map(fmtValue).join(', ')));
  }
  if (typeof access.max_rate === 'number') {
    limits.append(el('li', null, 'At most ' + access.max_rate + (access.max_rate === 1 ? ' write' : ' writes') + ' a minute'));
  }
  limits.append(el('li', null, access.type + (access.confirm ? ', read back after the write' : ', not read back (confirm = false)')));

  // Allowed values, or on and off, are buttons; anything else is typed.
  const choices = access.allowed.length > 0 ? access.allowed : kind === 'bool' ? [true, false] : [];
  const box = $('write-choices');
  box.replaceChildren();
  for (const v of choices) {
    const b = el('button', 'choice', withUnit(v));
    b.type = 'button';
    b.dataset.value = JSON.stringify(v);
    b.addEventListener('click', () => confirmWrite(v));
    box.append(b);
  }
  box.hidden = choices.length === 0;
  $('write-field').hidden = choices.length > 0;
  $('write-next').hidden = choices.length > 0;
  const input = $('write-input');
  input.value = '';
  input.inputMode = kind === 'number' ? 'decimal' : 'text';
  input.placeholder = hasMin && hasMax ? fmtValue(access.min) + ' – ' + fmtValue(access.max) : '';
  input.removeAttribute('aria-invalid');
  $('write-problem').textContent = '';

  writeStep('edit');
  const dialog = $('write-dialog');
  if (!dialog.open) dialog.showModal();
  (choices.length > 0 ? box.querySelector('button') : input).focus();
}

// The typed value, checked as the gateway will check it (the gateway
// checks again: this only saves a round trip). Returns { value } or
// { problem }.
function readWriteValue(text) {
  const access = writing.access;
  const kind = writeKind(access);
  if (kind === 'text') return { value: text };
  let t = text.trim();
  if (t === '') return { problem: 'Type a value.' };
  // A decimal comma, as many keyboards type it.
  if (!t.includes('.') && /^[+-]?\d+,\d+$/.test(t)) t = t.replace(',', '.');
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return { problem: 'Not a number: ' + text.trim() };
  const v = Number(t);
  if (!isFinite(v)) return { problem: 'Not a number: ' + text.trim() };
  const unit = writing.unit ? ' ' + writing.unit : '';
  if (typeof access.min === 'number' && v < access.min) {
    return { problem: fmtValue(v) + unit + ' is below the lowest value accepted, ' + fmtValue(access.min) + unit + '.' };
  }
  if (typeof access.max === 'number' && v > access.max) {
    return { problem: fmtValue(v) + unit + ' is above the highest value accepted, ' + fmtValue(access.max) + unit + '.' };
  }
  if (access.allowed.length > 0 && !access.allowed.some((a) => a === v)) {
    return { problem: fmtValue(v) + ' is not one of ' + access.allowed.map(fmtValue).join(', ') + '.' };
  }
  return { value: v };
}

function nextWrite() {
  const input = $('write-input');
  const read = readWriteValue(input.value);
  if (read.problem) {
    $('write-problem').textContent = read.problem;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  $('write-problem').textContent = '';
  confirmWrite(read.value);
}

function confirmWrite(v) {
  writing.value = v;
  const t = findTag(writing.device, writing.tag);
  writing.now = t ? nowText(t) : 'unknown';
  const now = t && t.quality === 'good' ? withUnit(t.value, writing.unit, t.decimals) : writing.now;
  $('write-question').textContent =
    'Write ' + withUnit(v) + ' to ' + writing.device + ' / ' + writing.tag + ' (now ' + now + ')? ' +
    'This changes the device.';
  $('write-how').textContent =
    'The gateway checks the value again and writes it ahead of the device\'s next poll' +
    (writing.access.confirm ? ', then reads it back.' : '; it is not read back (confirm = false).');
  writeStep('confirm');
  // Cancel, not Write, has the focus: Enter pressed out of habit must not
  // change the plant.
  $('write-no').focus();
}

// Shows an outcome in the dialog if it is still the one the write was
// asked from, else in a toast.
function writeOutcome(seq, what, result, text, detail) {
  const dialog = $('write-dialog');
  if (seq !== writing.seq || !dialog.open) {
    toast(what + ': ' + text);
    return;
  }
  const outcome = $('write-outcome');
  outcome.dataset.result = result;
  outcome.textContent = text;
  $('write-detail').textContent = detail || '';
}

async function sendWrite() {
  const seq = writing.seq;
  const device = writing.device;
  const tag = writing.tag;
  const value = writing.value;
  const unit = writing.unit;
  const decimals = writing.decimals;
  writeStep('result');
  $('write-outcome').dataset.result = 'sending';
  $('write-outcome').textContent = 'Writing ' + withUnit(value) + '…';
  $('write-detail').textContent = '';
  $('write-close').focus();
  const say = (result, text, detail) => writeOutcome(seq, device + ' / ' + tag, result, text, detail);

  let token = sessionStorage.getItem(TOKEN_KEY);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (!token) {
      token = await askToken(attempt === 0 ? WRITE_TOKEN_WHY : TOKEN_REFUSED);
      if (!token) {
        say('cancelled', 'Not written: no token given.');
        return;
      }
    }
    let response;
    try {
      response = await fetch('api/tags/' + encodeURIComponent(device) + '/' + encodeURIComponent(tag) + '/write', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ v: value }),
      });
    } catch (err) {
      say('unknown', 'The gateway did not answer (' + err.message + '): the write may or may not have happened. Check the value.');
      return;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      continue;
    }
    let answer = {};
    try {
      answer = await response.json();
    } catch (err) {
      answer = {};
    }
    if (response.status !== 403) sessionStorage.setItem(TOKEN_KEY, token);
    const [result, text, detail] = describeWrite(response.status, answer, unit, decimals);
    say(result, text, detail);
    return;
  }
  say('rejected', 'Not written: the gateway refused the token.');
}

// The dialog's sentence for an answer: [result, text, detail].
function describeWrite(status, a, unit, decimals) {
  const back = (label, v) => (v === null || v === undefined ? null : label + ' ' + withUnit(v, unit, decimals));
  const detail = (...parts) => parts.filter((p) => p).join(' · ');
  switch (a.result) {
    case 'verified':
      return ['verified', 'Verified: read back ' + withUnit(a.read_back, unit, decimals), detail(back('was', a.old), took(a))];
    case 'written':
      return [
        'written',
        'Written' + (a.message ? ': ' + a.message : ' (not verified)'),
        detail(back('read back', a.read_back), back('was', a.old), took(a)),
      ];
    case 'rejected':
      return ['rejected', 'Not written: ' + (a.message || a.reason || 'refused'), detail(a.reason ? 'reason ' + a.reason : null)];
    case 'unknown':
      return ['unknown', UNKNOWN_TEXT, detail(a.message, back('was', a.old))];
  }
  // Not an answer of the write desk: the gateway's own refusals, and a
  // desk that took too long to answer (then the write may be under way).
  const error = a.error || 'the gateway answered ' + status;
  if (status === 504) return ['unknown', UNKNOWN_TEXT, error];
  return ['rejected', 'Not written: ' + error, null];
}

function took(a) {
  return typeof a.took_ms === 'number' ? 'took ' + a.took_ms + ' ms' : null;
}

$('write-next').addEventListener('click', nextWrite);
$('write-input').addEventListener('keydown', (e) => {
  if (e.key !== 'Enter') return;
  // Not passed on: the focus moves to Cancel, which must not take this
  // Enter as a click.
  e.preventDefault();
  nextWrite();
});
$('write-back').addEventListener('click', () => {
  writeStep('edit');
  const first = $('write-choices').hidden ? $('write-input') : $('write-choices').querySelector('button');
  if (first) first.focus();
});
$('write-go').addEventListener('click', sendWrite);
for (const id of ['write-cancel', 'write-no', 'write-close']) {
  $(id).addEventListener('click', () => $('write-dialog').close());
}

connect();
