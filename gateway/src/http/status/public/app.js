// Status page for lab staff. Plain JS, no libraries, no external resources.
// Every value from the gateway is put in the page as text (textContent), never parsed as HTML.
'use strict';
(function () {
  const LANGS = ['vi', 'en'];
  let lang = LANGS.includes(localStorage.getItem('iomt.lang')) ? localStorage.getItem('iomt.lang') : 'vi';
  let dict = {};
  let me = { role: 'viewer', phi: false, replay: false };
  let refreshTimer;
  const view = document.getElementById('view');

  // ---- helpers -------------------------------------------------------------------------------
  function t(key, vars) {
    let s = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
    if (vars) for (const k of Object.keys(vars)) s = s.split('{' + k + '}').join(String(vars[k]));
    return s;
  }

  /** h('td', {class: 'num'}, 'text', childNode, ...): element with attributes and text/element children. */
  function h(tag, attrs) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, c) {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) c.forEach((x) => append(el, x));
    else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }
  const pad = (n) => String(n).padStart(2, '0');
  function fmtDate(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
  }
  function fmtClock(d) {
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  /** Local time: HH:MM:SS today, else YYYY-MM-DD HH:MM:SS. */
  function fmtTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return fmtDate(d) === fmtDate(new Date()) ? fmtClock(d) : fmtDate(d) + ' ' + fmtClock(d);
  }
  function fmtAge(ms) {
    const s = Math.round(ms / 1000);
    if (s < 120) return t('unit.s', { n: s });
    if (s < 7200) return t('unit.min', { n: Math.round(s / 60) });
    if (s < 172800) return t('unit.h', { n: Math.round(s / 3600) });
    return t('unit.d', { n: Math.round(s / 86400) });
  }
  function startOfToday() {
    const d = new Date();
    return new Date(d.getFullYear(), d.getMonth(), d.getDate());
  }
  function stateBadge(state) {
    const cls = { connected: 'ok', listening: 'ok', idle: 'ok', delivering: 'ok', starting: 'warn', backoff: 'warn', disconnected: 'warn', stopped: 'warn', error: 'bad', 'not-configured': 'bad' }[state] || 'warn';
    return h('span', { class: 'badge ' + cls, 'data-state': state }, t('state.' + state));
  }
  function notice(text) {
    const n = document.getElementById('notice');
    n.textContent = text;
    n.hidden = false;
    setTimeout(() => (n.hidden = true), 6000);
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  async function api(path, init) {
    // X-Requested-With: a 401 then carries no Basic challenge; the page shows its own login form
    const r = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { accept: 'application/json', 'content-type': 'application/json', 'x-requested-with': 'iomt-status' } }, init || {}));
    let body;
    try {
      body = await r.json();
    } catch (e) {
      body = {};
    }
    if (!r.ok) throw new HttpError(r.status, (body && body.error) || r.statusText);
    return body;
  }
  function errorBox(e) {
    if (e && e.status === 403) return h('p', { class: 'err' }, t('err.forbidden'));
    return h('p', { class: 'err' }, t('err.load', { error: e && e.message ? e.message : String(e) }));
  }
  function table(headers, rows) {
    return h('table', null, h('thead', null, h('tr', null, headers.map((x) => h('th', typeof x === 'object' ? x : null, typeof x === 'object' ? x.label : x)))), h('tbody', null, rows));
  }

  // ---- language ------------------------------------------------------------------------------
  async function loadLang(l) {
    dict = await api('i18n/' + l + '.json');
    lang = l;
    localStorage.setItem('iomt.lang', l);
    document.documentElement.lang = l;
    document.title = t('app.title');
    document.querySelectorAll('[data-i18n]').forEach((el) => (el.textContent = t(el.getAttribute('data-i18n'))));
    const btn = document.getElementById('lang-switch');
    btn.textContent = t('lang.switch');
    btn.setAttribute('lang', l === 'vi' ? 'en' : 'vi');
  }

  // ---- routes --------------------------------------------------------------------------------
  function parseHash() {
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, qs] = hash.split('?');
    return { path, params: new URLSearchParams(qs || '') };
  }
  async function route() {
    clearInterval(refreshTimer);
    const { path, params } = parseHash();
    const name = path.startsWith('/message/') ? 'search' : path === '/search' ? 'search' : path === '/quarantine' ? 'quarantine' : path === '/history' ? 'history' : path === '/password' ? 'password' : 'home';
    document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.getAttribute('data-nav') === name));
    clear(view);
    try {
      if (path === '/search') await searchPage(params);
      else if (path.startsWith('/message/')) await messagePage(decodeURIComponent(path.slice('/message/'.length)));
      else if (path === '/quarantine') await quarantinePage();
      else if (path === '/history') await historyPage();
      else if (path === '/password') passwordPage();
      else await homePage();
    } catch (e) {
      if (e && e.status === 401) return showLogin();
      append(view, errorBox(e));
    }
  }

  // ---- login (POST /api/v1/login → session cookie) -------------------------------------------
  /** The login form; `message` is an error (red) unless `info` is true (e.g. "password changed"). */
  function showLogin(message, info) {
    clearInterval(refreshTimer);
    me = { role: 'viewer', phi: false, replay: false };
    document.querySelector('.top nav').hidden = true;
    document.getElementById('logout').hidden = true;
    document.getElementById('nav-password').hidden = true;
    document.getElementById('who').textContent = '';
    clear(view);
    view.setAttribute('data-page', 'login');
    const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true });
    const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const error = h('p', { class: 'err', id: 'login-error', role: 'alert' }, info ? '' : message || '');
    const infoBox = info && message ? h('p', { class: 'ok-msg', id: 'login-info', role: 'status' }, message) : null;
    const form = h(
      'form',
      { class: 'login card', id: 'login-form', onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        if (infoBox) infoBox.remove();
        try {
          await api('../api/v1/login', { method: 'POST', body: JSON.stringify({ user: user.value, password: password.value }) });
          password.value = '';
          await start();
        } catch (e) {
          error.textContent = e.status === 401 ? t('login.failed') : e.status === 429 ? t('login.throttled') : t('err.load', { error: e.message });
        }
      } },
      h('h1', null, t('login.title')),
      infoBox,
      h('label', null, t('login.user'), user),
      h('label', null, t('login.password'), password),
      error,
      h('button', { type: 'submit', class: 'primary' }, t('login.submit')),
    );
    append(view, form);
    user.focus();
  }

  // ---- home ----------------------------------------------------------------------------------
  async function homePage() {
    view.setAttribute('data-page', 'home');
    append(view, h('h1', null, t('app.title')));
    if (me.phi) {
      const input = h('input', { id: 'home-search', type: 'search', name: 'specimenId', placeholder: t('home.searchPlaceholder'), autocomplete: 'off', autofocus: true });
      const form = h(
        'form',
        { class: 'search-big card', role: 'search', onsubmit: (ev) => {
          ev.preventDefault();
          const v = input.value.trim();
          if (v) location.hash = '#/search?specimenId=' + encodeURIComponent(v);
        } },
        h('label', null, t('home.searchLabel'), input),
        h('button', { type: 'submit', class: 'primary' }, t('home.searchButton')),
      );
      append(view, form);
      input.focus();
    }
    let tables = h('div', { id: 'home-tables' }); // swapped on each refresh
    append(view, tables);
    const load = async () => {
      try {
        const s = await api('api/summary?since=' + encodeURIComponent(startOfToday().toISOString()));
        const fresh = h('div', { id: 'home-tables' }, devicesCard(s), destinationsCard(s), h('p', { class: 'updated' }, t('home.updated', { time: fmtClock(new Date(s.generatedAt)) })));
        tables.replaceWith(fresh);
        tables = fresh;
      } catch (e) {
        if (e && e.status === 401) return showLogin(); // the session expired
        clear(tables);
        append(tables, errorBox(e));
      }
    };
    await load();
    refreshTimer = setInterval(load, 10000);
  }

  function devicesCard(s) {
    const rows = s.devices.map((d) => {
      const todayHref = '#/search?deviceId=' + encodeURIComponent(d.deviceId) + '&from=' + fmtDate(startOfToday());
      const count = d.todayCountCapped ? t('atLeast', { n: d.todayCount }) : d.todayCount;
      return h(
        'tr',
        { 'data-device': d.deviceId },
        h('td', null, me.phi ? h('a', { href: todayHref }, d.deviceId) : d.deviceId, d.driver ? h('div', { class: 'muted' }, d.driver) : null),
        h('td', null, stateBadge(d.state), d.detail ? h('div', { class: 'muted' }, d.detail) : null, undeliveredWarning(d)),
        h('td', null, d.lastMessageAt ? fmtTime(d.lastMessageAt) : h('span', { class: 'muted' }, t('device.never'))),
        h('td', { class: 'num', 'data-col': 'today' }, count),
        h('td', null, d.lastError ? h('span', { class: 'err' }, d.lastError) : '', d.lastErrorAt ? h('div', { class: 'muted' }, fmtTime(d.lastErrorAt)) : null),
        h('td', { class: 'num', 'data-col': 'quarantine' }, d.quarantineToday ? h('a', { href: '#/quarantine' }, h('span', { class: 'badge bad' }, d.quarantineToday)) : '0'),
      );
    });
    return h(
      'section',
      { class: 'card', id: 'devices' },
      h('h2', null, t('home.devices')),
      rows.length ? table([t('device.name'), t('device.state'), t('device.lastMessage'), { label: t('device.today'), class: 'num' }, t('device.lastError'), { label: t('device.quarantine'), class: 'num' }], rows) : h('p', { class: 'muted' }, t('home.noDevices')),
    );
  }

  // results that reached no destination (flag no-destination): a warning on the device, linked to them
  function undeliveredWarning(d) {
    const n = Math.max(d.undeliveredToday || 0, d.undelivered && !d.undeliveredToday ? d.undelivered.count : 0);
    if (!n) return null;
    const text = t('device.undelivered', { n: n });
    const href = '#/search?flag=no-destination&deviceId=' + encodeURIComponent(d.deviceId);
    return h('div', { class: 'badge bad', 'data-undelivered': n, title: d.undelivered ? t('undelivered.' + d.undelivered.reason) : t('flag.no-destination') }, me.phi ? h('a', { href: href }, text) : text);
  }

  function destinationsCard(s) {
    const rows = s.destinations.map((d) => {
      const replay =
        me.replay && d.dead > 0
          ? h('button', { type: 'button', class: 'replay', 'data-replay': d.destination, onclick: async (ev) => {
              if (!window.confirm(t('dest.replayConfirm', { n: d.dead, dest: d.destination }))) return;
              ev.target.disabled = true;
              try {
                const r = await api('../api/v1/dead-letters/replay', { method: 'POST', body: JSON.stringify({ destination: d.destination }) });
                notice(t('dest.replayed', { n: r.replayed, dest: d.destination }));
              } catch (e) {
                notice(t('err.load', { error: e.message }));
              }
              route();
            } }, t('dest.replay'))
          : null;
      return h(
        'tr',
        { 'data-destination': d.destination },
        h('td', null, d.destination),
        h('td', null, stateBadge(d.state)),
        h('td', { class: 'num', 'data-col': 'queue' }, d.pending + (d.inFlight || 0)),
        h('td', { class: 'num' }, d.oldestPendingAgeMs ? fmtAge(d.oldestPendingAgeMs) : '–'),
        h('td', { class: 'num', 'data-col': 'dead' }, d.dead ? h('span', { class: 'badge bad' }, d.dead) : '0', replay ? ' ' : null, replay),
        h('td', { class: 'num' }, d.delivered),
        h('td', null, d.lastError ? h('span', { class: 'err' }, d.lastError) : ''),
      );
    });
    return h(
      'section',
      { class: 'card', id: 'destinations' },
      h('h2', null, t('home.destinations')),
      rows.length
        ? table([t('dest.name'), t('dest.state'), { label: t('dest.queue'), class: 'num' }, { label: t('dest.oldest'), class: 'num' }, { label: t('dest.dead'), class: 'num' }, { label: t('dest.delivered'), class: 'num' }, t('dest.lastError')], rows)
        : h('p', { class: 'muted' }, t('home.noDestinations')),
    );
  }

  // ---- search --------------------------------------------------------------------------------
  async function searchPage(params) {
    view.setAttribute('data-page', 'search');
    append(view, h('h1', null, t('search.title')));
    if (!me.phi) {
      append(view, h('p', { class: 'err' }, t('err.forbidden')));
      return;
    }
    const summary = await api('api/summary?since=' + encodeURIComponent(startOfToday().toISOString())).catch(() => ({ devices: [] }));
    const field = (name, label, input) => h('label', null, label, input);
    const specimen = h('input', { name: 'specimenId', type: 'search', value: params.get('specimenId') || '', autocomplete: 'off' });
    const patient = h('input', { name: 'patientId', type: 'search', value: params.get('patientId') || '', autocomplete: 'off' });
    const device = h('select', { name: 'deviceId' }, h('option', { value: '' }, t('search.anyDevice')), summary.devices.map((d) => h('option', { value: d.deviceId, selected: d.deviceId === params.get('deviceId') }, d.deviceId)));
    const from = h('input', { name: 'from', type: 'date', value: params.get('from') || '' });
    const to = h('input', { name: 'to', type: 'date', value: params.get('to') || '' });
    const form = h(
      'form',
      { class: 'search-form card', role: 'search', onsubmit: (ev) => {
        ev.preventDefault();
        const q = new URLSearchParams();
        for (const el of [specimen, patient, device, from, to]) if (el.value.trim()) q.set(el.name, el.value.trim());
        location.hash = '#/search?' + q.toString();
      } },
      field('specimenId', t('search.specimen'), specimen),
      field('patientId', t('search.patient'), patient),
      field('deviceId', t('search.device'), device),
      field('from', t('search.from'), from),
      field('to', t('search.to'), to),
      h('button', { type: 'submit', class: 'primary' }, t('search.submit')),
    );
    append(view, form);
    if (![...params.keys()].length) return;

    const q = new URLSearchParams();
    for (const k of ['specimenId', 'patientId', 'deviceId', 'flag']) if (params.get(k)) q.set(k, params.get(k));
    // dates are the lab's local days: from = local midnight, to = the next local midnight (inclusive day)
    const day = (v, plus) => {
      const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v || '');
      return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plus).toISOString() : undefined;
    };
    if (day(params.get('from'), 0)) q.set('from', day(params.get('from'), 0));
    if (day(params.get('to'), 1)) q.set('to', day(params.get('to'), 1));
    q.set('limit', '50');
    const results = h('section', { class: 'card', id: 'results' });
    append(view, results);
    let all = [];
    const loadPage = async (beforeId) => {
      if (beforeId) q.set('beforeId', String(beforeId));
      const r = await api('../api/v1/messages?' + q.toString());
      all = all.concat(r.messages);
      clear(results);
      if (!all.length) {
        append(results, h('p', { class: 'muted' }, t('search.none')));
        return;
      }
      append(results, h('p', null, t('search.results', { n: all.length })));
      const rows = all.map((m) =>
        h(
          'tr',
          { class: 'row-link', 'data-message': m.id, onclick: (ev) => {
            if (ev.target.tagName !== 'A') location.hash = '#/message/' + m.id;
          } },
          h('td', null, h('a', { href: '#/message/' + m.id }, fmtTime(m.receivedAt))),
          h('td', null, m.deviceId),
          h('td', null, m.messageType || ''),
          h('td', { class: 'num' }, m.observationCount),
          h('td', null, (m.flags || []).map((f) => h('span', { class: 'badge warn', title: t('flag.' + f) }, f))),
          h('td', null, t('mstate.' + m.status)),
        ),
      );
      append(results, table([t('msg.received'), t('msg.device'), t('msg.type'), { label: t('msg.results'), class: 'num' }, t('msg.flags'), t('msg.status')], rows));
      if (r.next) append(results, h('button', { type: 'button', class: 'primary', onclick: () => loadPage(r.next).catch((e) => append(results, errorBox(e))) }, t('search.more')));
    };
    await loadPage();
  }

  // ---- message -------------------------------------------------------------------------------
  function valueText(v) {
    if (!v) return '';
    switch (v.kind) {
      case 'quantity':
        return (v.comparator || '') + (v.decimal !== undefined ? v.decimal : String(v.value));
      case 'text':
        return v.text;
      case 'coded':
        return [v.code, v.display].filter(Boolean).join(' – ');
      case 'structured-numeric':
        return [v.comparator, v.num1, v.separator, v.num2].filter((x) => x !== undefined && x !== null).join('');
      case 'encapsulated':
        return '[' + [v.typeOfData, v.dataSubtype, v.encoding].filter(Boolean).join('/') + ', ' + (v.data || '').length + ' chars]';
      case 'reference':
        return v.pointer;
      default:
        return JSON.stringify(v);
    }
  }
  function qualityList(q) {
    if (!q || !q.length) return '';
    return h(
      'ul',
      { class: 'flags' },
      q.map((f) =>
        h('li', { 'data-quality': f.code }, h('span', { class: 'badge warn' }, f.code), f.location ? ' @ ' + f.location : '', f.text ? ': ' + f.text : '', f.original !== undefined && me.phi ? h('div', { class: 'muted' }, '“' + f.original + '”') : null),
      ),
    );
  }

  async function messagePage(id) {
    view.setAttribute('data-page', 'message');
    if (!me.phi) {
      append(view, h('p', { class: 'err' }, t('err.forbidden')));
      return;
    }
    let m;
    try {
      m = await api('../api/v1/messages/' + encodeURIComponent(id));
    } catch (e) {
      if (e.status === 404) {
        append(view, h('h1', null, t('msg.title', { id })), h('p', { class: 'err' }, t('msg.notFound')));
        return;
      }
      throw e;
    }
    append(view, h('h1', null, t('msg.title', { id: m.id })));

    // The lab's question first: did it reach the HIS, and when?
    const deliveries = m.deliveries || [];
    const banner = h('section', { id: 'delivery-summary' });
    if (!deliveries.length) append(banner, h('div', { class: 'delivery pending' }, t('msg.delivery.none')));
    // one line per destination (a message may have several outbox rows per destination, e.g. one per order)
    const byDest = new Map();
    for (const d of deliveries) {
      const cur = byDest.get(d.destination);
      const rank = { dead: 0, pending: 1, delivered: 2 };
      if (!cur || rank[d.state] < rank[cur.state] || (d.state === cur.state && (d.deliveredAt || '') > (cur.deliveredAt || ''))) byDest.set(d.destination, d);
    }
    for (const d of byDest.values()) {
      const text =
        d.state === 'delivered'
          ? t('msg.delivery.delivered', { dest: d.destination, time: fmtTime(d.deliveredAt) })
          : d.state === 'dead'
            ? t('msg.delivery.dead', { dest: d.destination, attempts: d.attempts })
            : t('msg.delivery.pending', { dest: d.destination, attempts: d.attempts });
      append(banner, h('div', { class: 'delivery ' + d.state, 'data-destination': d.destination, 'data-state': d.state }, text, d.lastError && d.state !== 'delivered' ? h('span', { class: 'detail' }, d.lastError) : null));
    }
    append(view, banner);

    const obs = m.observations || [];
    const first = obs.find((o) => o.subject) || {};
    const subj = first.subject || {};
    const meta = h(
      'dl',
      { class: 'meta' },
      h('dt', null, t('msg.received')), h('dd', null, fmtTime(m.receivedAt)),
      h('dt', null, t('msg.device')), h('dd', null, m.deviceId + (m.driver ? ' (' + m.driver + ')' : '')),
      h('dt', null, t('msg.type')), h('dd', null, [m.messageType, m.sourceMessageId, m.processingId].filter(Boolean).join(' · ')),
      h('dt', null, t('msg.specimen')), h('dd', { id: 'msg-specimen' }, [...new Set(obs.map((o) => o.subject && o.subject.specimenId).filter(Boolean))].join(', ')),
      h('dt', null, t('msg.patient')), h('dd', { id: 'msg-patient' }, me.phi ? [subj.patientId, subj.patientName].filter(Boolean).join(' · ') : t('msg.phiHidden')),
      h('dt', null, t('msg.status')), h('dd', null, t('mstate.' + m.status)),
      h('dt', null, t('msg.messageFlags')),
      h('dd', { id: 'msg-flags' }, (m.flags || []).length ? h('ul', { class: 'flags' }, m.flags.map((f) => h('li', { 'data-flag': f }, h('span', { class: 'badge warn' }, f), ' ', t('flag.' + f) !== 'flag.' + f ? t('flag.' + f) : ''))) : '–'),
    );
    append(view, h('section', { class: 'card' }, meta));

    const obsRows = obs.map((o) =>
      h(
        'tr',
        { 'data-obs': o.seq },
        h('td', null, (o.code && (o.code.display || o.code.code)) || '', o.code && o.code.display ? h('div', { class: 'muted' }, o.code.code) : null),
        h('td', { class: o.value && o.value.kind === 'quantity' ? 'num' : null }, valueText(o.value)),
        h('td', null, (o.value && o.value.unit) || ''),
        h('td', null, o.referenceRange || ''),
        h('td', null, (o.interpretation || []).join(' ')),
        h('td', null, o.statusCode || o.status, o.deviceStatus ? h('div', { class: 'muted' }, o.deviceStatus) : null),
        h('td', null, qualityList(o.quality)),
      ),
    );
    append(view, h('section', { class: 'card', id: 'observations' }, h('h2', null, t('msg.observations')), table([t('msg.test'), { label: t('msg.value'), class: 'num' }, t('msg.unit'), t('msg.range'), t('msg.abnormal'), t('msg.resultStatus'), t('msg.quality')], obsRows)));

    const delRows = deliveries.map((d) =>
      h('tr', { 'data-destination': d.destination }, h('td', null, d.destination), h('td', { 'data-state': d.state }, t('dstate.' + d.state)), h('td', { class: 'num' }, d.attempts), h('td', null, d.deliveredAt ? fmtTime(d.deliveredAt) : ''), h('td', null, d.lastError ? h('span', { class: 'err' }, d.lastError) : '')),
    );
    append(view, h('section', { class: 'card', id: 'deliveries' }, h('h2', null, t('msg.deliveries')), table([t('dest.name'), t('msg.status'), { label: t('msg.attempts'), class: 'num' }, t('msg.deliveredAt'), t('dest.lastError')], delRows)));

    if (me.phi && m.raw) {
      const text = m.raw.encoding === 'utf8' ? m.raw.data.replace(/\r\n?/g, '\n') : m.raw.data;
      append(view, h('section', { class: 'card', id: 'raw' }, h('h2', null, t('msg.raw')), m.raw.encoding !== 'utf8' ? h('p', { class: 'muted' }, t('msg.rawBase64')) : null, h('pre', { class: 'raw' }, text)));
    }
  }

  // ---- quarantine ----------------------------------------------------------------------------
  async function quarantinePage() {
    view.setAttribute('data-page', 'quarantine');
    append(view, h('h1', null, t('q.title')), h('p', { class: 'muted' }, t('q.intro')));
    const r = await api('../api/v1/quarantine?limit=200');
    const rows = r.quarantine.map((q) => h('tr', { 'data-quarantine': q.id }, h('td', null, fmtTime(q.receivedAt)), h('td', null, q.deviceId), h('td', null, q.reason), h('td', null, q.errorCode), h('td', { class: 'num' }, q.bytes)));
    append(view, h('section', { class: 'card', id: 'quarantine' }, rows.length ? table([t('q.received'), t('q.device'), t('q.reason'), t('q.code'), { label: t('q.bytes'), class: 'num' }], rows) : h('p', { class: 'muted' }, t('q.none'))));
  }

  // ---- configuration history (admins: GET/POST /api/v1/deploys) ------------------------------
  function changeList(v) {
    const s = v.summary;
    const part = (key, list, n) => (n ? h('div', null, t(key, { n: n }) + ': ' + list.map((x) => x.type + (x.fields ? ' (' + x.fields.join(', ') + ')' : '')).join(', ') + (n > list.length ? ' …' : '')) : null);
    const none = !s.counts.added && !s.counts.removed && !s.counts.changed;
    return [part('hist.added', s.added, s.counts.added), part('hist.removed', s.removed, s.counts.removed), part('hist.changed', s.changed, s.counts.changed), none ? h('span', { class: 'muted' }, t('hist.noChange')) : null];
  }
  async function historyPage() {
    view.setAttribute('data-page', 'history');
    append(view, h('h1', null, t('hist.title')), h('p', { class: 'muted' }, t('hist.intro')));
    if (me.role !== 'admin') {
      append(view, h('p', { class: 'err' }, t('err.forbidden')));
      return;
    }
    const r = await api('../api/v1/deploys');
    const rows = r.versions.map((v) =>
      h(
        'tr',
        { 'data-version': v.id },
        h('td', { class: 'num' }, v.id, v.id === r.current ? h('div', { class: 'badge ok' }, t('hist.current')) : null),
        h('td', null, fmtTime(v.at)),
        h('td', null, t('hist.kind.' + v.kind, { n: v.rollbackOf })),
        h('td', null, v.user || '', v.source ? h('div', { class: 'muted' }, v.source) : null),
        h('td', null, changeList(v)),
        h('td', null, v.id === r.current ? '' : h('button', { type: 'button', class: 'replay', 'data-rollback': v.id, onclick: async (ev) => {
          if (!window.confirm(t('hist.rollbackConfirm', { n: v.id }))) return;
          ev.target.disabled = true;
          try {
            await api('../api/v1/deploys/' + v.id + '/rollback', { method: 'POST', body: '{}' });
            notice(t('hist.rolledBack', { n: v.id }));
            route();
          } catch (e) {
            ev.target.disabled = false;
            append(ev.target.parentNode, errorBox(e));
          }
        } }, t('hist.rollback'))),
      ),
    );
    append(view, h('section', { class: 'card', id: 'history' }, rows.length ? table([{ label: t('hist.version'), class: 'num' }, t('hist.at'), t('hist.kind'), t('hist.user'), t('hist.changes'), ''], rows) : h('p', { class: 'muted' }, t('hist.none'))));
  }

  // ---- change one's own password (POST /api/v1/account/password) ----------------------------
  const PW_MIN = 8; // chars, and at most 72 UTF-8 bytes (bcrypt): the server's rule (accounts/users.ts)
  const PW_MAX_BYTES = 72;
  function passwordProblem(current, next, again) {
    if (!current) return t('pw.needCurrent');
    if (next.length < PW_MIN) return t('pw.tooShort', { n: PW_MIN });
    if (new TextEncoder().encode(next).length > PW_MAX_BYTES) return t('pw.tooLong', { n: PW_MAX_BYTES });
    if (next !== again) return t('pw.mismatch');
    return '';
  }
  function passwordPage() {
    view.setAttribute('data-page', 'password');
    const field = (id, auto) => h('input', { id: id, type: 'password', autocomplete: auto, required: true });
    const current = field('pw-current', 'current-password');
    const next = field('pw-new', 'new-password');
    const again = field('pw-new2', 'new-password');
    const error = h('p', { class: 'err', id: 'pw-error', role: 'alert' });
    const done = h('p', { class: 'ok-msg', id: 'pw-ok', role: 'status', hidden: true });
    const submit = h('button', { type: 'submit', class: 'primary' }, t('pw.submit'));
    const form = h(
      'form',
      { class: 'login card', id: 'password-form', novalidate: true, onsubmit: async (ev) => {
        ev.preventDefault();
        error.textContent = '';
        done.hidden = true;
        const problem = passwordProblem(current.value, next.value, again.value);
        if (problem) {
          error.textContent = problem;
          return;
        }
        submit.disabled = true;
        try {
          await api('../api/v1/account/password', { method: 'POST', body: JSON.stringify({ currentPassword: current.value, newPassword: next.value }) });
        } catch (e) {
          submit.disabled = false;
          if (e.status === 401) return showLogin(t('login.expired'));
          error.textContent = t('pw.failed', { error: e.message });
          return;
        }
        current.value = next.value = again.value = '';
        submit.disabled = false;
        // The server ends the user's sessions on a password change; it renews the page's own
        // session cookie, but if that session is gone (e.g. Basic login, or revoked) log in again.
        try {
          await api('api/me');
        } catch (e) {
          if (e.status === 401) return showLogin(t('pw.changedLogin'), true);
        }
        done.textContent = t('pw.changed');
        done.hidden = false;
      } },
      h('h1', null, t('pw.title')),
      h('p', { class: 'muted' }, t('pw.intro', { n: PW_MIN })),
      h('label', null, t('pw.current'), current),
      h('label', null, t('pw.new'), next),
      h('label', null, t('pw.again'), again),
      error,
      done,
      submit,
    );
    append(view, form);
    current.focus();
  }

  // ---- start ---------------------------------------------------------------------------------
  async function start() {
    try {
      me = await api('api/me');
    } catch (e) {
      if (e.status === 401) return showLogin();
      me = { role: 'viewer', phi: false, replay: false }; // keep the least privilege
    }
    document.querySelector('.top nav').hidden = false;
    document.querySelectorAll('[data-phi]').forEach((el) => (el.hidden = !me.phi));
    document.querySelectorAll('[data-admin]').forEach((el) => (el.hidden = me.role !== 'admin'));
    document.body.setAttribute('data-role', me.role);
    document.getElementById('who').textContent = me.user ? me.user + ' (' + t('role.' + me.role) + ')' : '';
    document.getElementById('logout').hidden = !me.user;
    document.getElementById('nav-password').hidden = !me.user;
    route();
  }
  document.getElementById('lang-switch').addEventListener('click', async () => {
    await loadLang(lang === 'vi' ? 'en' : 'vi');
    if (view.getAttribute('data-page') === 'login') showLogin();
    else start();
  });
  document.getElementById('logout').addEventListener('click', async () => {
    await api('../api/v1/logout', { method: 'POST', body: '{}' }).catch(() => undefined);
    showLogin();
  });
  window.addEventListener('hashchange', () => (view.getAttribute('data-page') === 'login' ? undefined : route()));
  (async () => {
    await loadLang(lang);
    await start();
  })();
})();
