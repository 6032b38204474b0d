// keygate web console. Vanilla ES2020, no dependencies, no build step.
//
// Security rules this file keeps:
//   - the admin key lives in sessionStorage only (never persistent storage, a
//     cookie or a URL) and is sent as X-API-Key to same-origin /v1/ calls;
//   - every value from the API is put into the page with textContent or
//     attributes, never as HTML markup;
//   - a pasted key is searched with POST /v1/keys/lookup, never ?q=;
//   - a new secret is shown once and dropped from the DOM and from memory
//     when its dialog closes.
'use strict';

(() => {
  const STORAGE_KEY = 'keygate.adminKey';
  const PAGE_SIZE = 50;
  const SEARCH_DELAY_MS = 250;
  // A full keygate key (<prefix>_<46 base62>), or anything long without
  // spaces that could be an imported foreign key.
  const KEY_RE = /^[A-Za-z0-9]+_[0-9A-Za-z]{46}$/;

  const $ = (sel) => document.querySelector(sel);

  const state = {
    keys: new Map(), // id -> key, rows currently shown
    order: [], // ids in display order
    selected: new Set(),
    cursor: '',
    seq: 0, // guards against out-of-order list responses
    searchTimer: 0,
    editing: null, // key being edited, null when creating
    rotating: null,
    confirmAction: null, // what the confirm dialog's OK button runs
    confirmCancel: null, // what closing it without OK runs
    selfId: '', // the id of the key this console is signed in with
  };

  // ---------- API ----------

  class APIError extends Error {
    constructor(status, body) {
      const code = (body && body.error) || 'http_' + status;
      const msg = (body && body.message) || 'request failed with status ' + status;
      super(msg);
      this.status = status;
      this.code = code;
      this.field = (body && body.field) || '';
    }
    describe() {
      return this.message + ' (' + this.code + ')';
    }
  }

  function adminKey() {
    return sessionStorage.getItem(STORAGE_KEY) || '';
  }

  async function api(method, path, body, key) {
    const headers = { 'X-API-Key': key || adminKey(), Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new APIError(0, { error: 'network_error', message: 'cannot reach the admin API' });
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!res.ok) {
      const err = new APIError(res.status, data);
      // The stored key stopped working (revoked, disabled, expired, or its
      // admin scope was removed): back to the sign-in box, with the reason.
      if ((res.status === 401 || res.status === 403) && !key) {
        signOut(err.describe());
      }
      throw err;
    }
    return data;
  }

  // ---------- helpers ----------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (v === true) e.setAttribute(k, '');
        else e.setAttribute(k, String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function show(node, on) {
    node.hidden = !on;
  }

  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d)) return s;
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  function splitList(s) {
    return s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
  }

  function sameList(a, b) {
    return (a || []).join('\n') === (b || []).join('\n');
  }

  function looksLikeSecret(s) {
    return KEY_RE.test(s) || (s.length >= 24 && !/\s/.test(s));
  }

  function notice(msg, isError) {
    const n = $('#notice');
    n.replaceChildren();
    if (!msg) {
      show(n, false);
      return;
    }
    if (typeof msg === 'string') n.textContent = msg;
    else n.append(msg);
    n.classList.toggle('is-error', !!isError);
    show(n, true);
  }

  // ---------- sign in / out ----------

  function signOut(reason) {
    sessionStorage.removeItem(STORAGE_KEY);
    state.keys.clear();
    state.order = [];
    state.selected.clear();
    $('#keys tbody').replaceChildren();
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
    show($('#console'), false);
    show($('#signout'), false);
    show($('#signin'), true);
    const e = $('#signin-error');
    e.textContent = reason || '';
    show(e, !!reason);
    $('#signin-key').value = '';
    $('#signin-key').focus();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const key = $('#signin-key').value.trim();
    const e = $('#signin-error');
    show(e, false);
    if (!key) return;
    try {
      await api('GET', '/v1/keys?limit=1', undefined, key);
    } catch (err) {
      e.textContent = err.status === 401 || err.status === 403 ? 'Not signed in: ' + err.describe() : err.describe();
      show(e, true);
      return;
    }
    sessionStorage.setItem(STORAGE_KEY, key);
    $('#signin-key').value = '';
    enterConsole();
  }

  function enterConsole() {
    show($('#signin'), false);
    show($('#console'), true);
    show($('#signout'), true);
    state.selfId = '';
    reload();
    // Which key is ours, so the console can warn before it locks the
    // operator out. The key goes in a POST body, as any pasted key does.
    api('POST', '/v1/keys/lookup', { secret: adminKey() }).then((r) => {
      state.selfId = r.key.id;
      if (state.keys.has(r.key.id)) replaceKey(state.keys.get(r.key.id));
    }).catch(() => {});
  }

  // selfNote is the warning for an action on keys that include our own.
  function selfNote(ids, what) {
    return state.selfId && ids.includes(state.selfId)
      ? ' This includes the key you are signed in with: ' + what + ' signs you out of the console.'
      : '';
  }

  // ---------- list, search, pagination ----------

  function reload() {
    state.cursor = '';
    loadKeys(true);
  }

  async function loadKeys(reset) {
    const seq = ++state.seq;
    const q = $('#search').value.trim();
    const status = $('#status-filter').value;
    let keys = [];
    let next = '';
    let emptyText = 'No keys match.';
    try {
      if (q && looksLikeSecret(q)) {
        // A pasted key goes in a POST body, never in a URL.
        emptyText = 'No key has this value.';
        try {
          const r = await api('POST', '/v1/keys/lookup', { secret: q });
          if (!status || r.key.status === status) keys = [r.key];
        } catch (err) {
          if (err.status !== 404) throw err;
        }
      } else {
        const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
        if (q) p.set('q', q);
        if (status) p.set('status', status);
        if (!reset && state.cursor) p.set('cursor', state.cursor);
        const r = await api('GET', '/v1/keys?' + p.toString());
        keys = r.keys || [];
        next = r.next_cursor || '';
      }
    } catch (err) {
      if (seq === state.seq && err.status !== 401 && err.status !== 403) notice('Cannot list keys: ' + err.describe(), true);
      return;
    }
    if (seq !== state.seq) return; // a newer search started meanwhile
    if (reset) {
      state.keys.clear();
      state.order = [];
      notice('');
    }
    for (const k of keys) {
      if (!state.keys.has(k.id)) state.order.push(k.id);
      state.keys.set(k.id, k);
    }
    state.cursor = next;
    // Keep only selections that are still shown.
    for (const id of [...state.selected]) if (!state.keys.has(id)) state.selected.delete(id);
    render();
    const empty = $('#empty');
    empty.textContent = emptyText;
    show(empty, state.order.length === 0);
    show($('#load-more'), !!next);
  }

  function scheduleSearch() {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(reload, SEARCH_DELAY_MS);
  }

  function render() {
    const body = $('#keys tbody');
    body.replaceChildren(...state.order.map((id) => row(state.keys.get(id))));
    updateBulkBar();
  }

  function row(k) {
    const tr = el('tr', { 'data-id': k.id, class: k.status === 'active' ? '' : 'is-' + k.status });
    const box = el('input', {
      type: 'checkbox', class: 'row-select', 'aria-label': 'Select ' + k.name,
      onchange: (e) => {
        if (e.target.checked) state.selected.add(k.id);
        else state.selected.delete(k.id);
        updateBulkBar();
      },
    });
    box.checked = state.selected.has(k.id);

    const sw = el('input', {
      type: 'checkbox', role: 'switch', class: 'switch enable-switch',
      'aria-label': (k.enabled ? 'Disable ' : 'Enable ') + k.name,
      title: k.enabled ? 'Enabled: click to disable' : 'Disabled: click to enable',
      onchange: (e) => toggle(k, e.target),
    });
    sw.checked = k.enabled;

    const nameCell = el('td', { class: 'name' }, el('div', { class: 'strong', text: k.name }));
    if (k.description) nameCell.append(el('div', { class: 'muted small', text: k.description }));
    if ((k.scopes || []).includes('keygate:admin')) nameCell.firstChild.append(' ', el('span', { class: 'badge admin', text: 'admin' }));
    if (k.id === state.selfId) nameCell.firstChild.append(' ', el('span', { class: 'badge self', title: 'the key this console is signed in with', text: 'you' }));

    tr.append(
      el('td', { class: 'sel' }, box),
      nameCell,
      el('td', { text: k.user }),
      el('td', { text: k.application || '' }),
      el('td', null, el('span', { class: 'badge status-' + k.status, text: k.status })),
      el('td', { title: k.expires_at || '', text: k.expires_at ? fmtTime(k.expires_at) : 'never' }),
      el('td', { title: k.last_used_at || '', text: k.last_used_at ? fmtTime(k.last_used_at) : 'never' }),
      el('td', null, el('code', { text: k.hint })),
      el('td', null, sw),
      el('td', { class: 'rowactions' },
        el('button', { type: 'button', class: 'small edit', onclick: () => openEdit(k) }, 'Edit'),
        el('button', { type: 'button', class: 'small rotate', onclick: () => openRotate(k) }, 'Rotate'),
        el('button', { type: 'button', class: 'small danger delete', onclick: () => confirmDelete([k], false) }, 'Delete')),
    );
    return tr;
  }

  function replaceKey(k) {
    if (!state.keys.has(k.id)) return;
    state.keys.set(k.id, k);
    const old = document.querySelector('#keys tbody tr[data-id="' + CSS.escape(k.id) + '"]');
    if (old) old.replaceWith(row(k));
  }

  function toggle(k, sw) {
    const want = sw.checked;
    if (!want && k.id === state.selfId) {
      askConfirm('Disable your own key', 'You are signed in with ' + k.name + ' (' + k.hint + ').' + selfNote([k.id], 'disabling it'),
        'Disable', () => setEnabled(k, sw, false), () => { sw.checked = true; });
      return;
    }
    setEnabled(k, sw, want);
  }

  async function setEnabled(k, sw, want) {
    sw.disabled = true;
    try {
      const r = await api('POST', '/v1/keys/' + encodeURIComponent(k.id) + (want ? '/enable' : '/disable'));
      replaceKey(r.key);
      notice((want ? 'Enabled ' : 'Disabled ') + r.key.name + '.');
      if (!want && k.id === state.selfId) signOut('You disabled ' + k.name + ', the key you were signed in with.');
    } catch (err) {
      sw.checked = !want;
      sw.disabled = false;
      notice('Cannot ' + (want ? 'enable ' : 'disable ') + k.name + ': ' + err.describe(), true);
    }
  }

  // ---------- bulk ----------

  function updateBulkBar() {
    const n = state.selected.size;
    $('#bulk-count').textContent = n + (n === 1 ? ' key selected' : ' keys selected');
    show($('#bulk-bar'), n > 0);
    const all = $('#select-all');
    const shown = state.order.length;
    all.checked = shown > 0 && state.order.every((id) => state.selected.has(id));
    all.indeterminate = n > 0 && !all.checked;
  }

  function selectAll(on) {
    for (const id of state.order) {
      if (on) state.selected.add(id);
      else state.selected.delete(id);
    }
    for (const b of document.querySelectorAll('#keys tbody .row-select')) b.checked = on;
    updateBulkBar();
  }

  async function bulk(action) {
    const ids = [...state.selected];
    if (ids.length === 0) return;
    let r;
    try {
      r = await api('POST', '/v1/keys/bulk', { action, ids });
    } catch (err) {
      notice('Bulk ' + action + ' failed: ' + err.describe(), true);
      return false;
    }
    const failed = (r.results || []).filter((x) => !x.ok);
    const done = (r.results || []).length - failed.length;
    const names = new Map(ids.map((id) => [id, state.keys.has(id) ? state.keys.get(id).name : '']));
    state.selected.clear();
    await loadKeys(true);
    const verb = { enable: 'Enabled', disable: 'Disabled', delete: 'Deleted' }[action];
    if (failed.length === 0) {
      notice(verb + ' ' + done + (done === 1 ? ' key.' : ' keys.'));
    } else {
      const list = el('ul', { class: 'failures' });
      for (const f of failed) {
        const name = names.get(f.id) ? names.get(f.id) + ' ' : '';
        list.append(el('li', null, el('span', { text: name }), el('code', { text: f.id }), ': ' + (f.error || 'failed')));
      }
      notice(el('div', { class: 'bulk-result' },
        el('p', { text: verb + ' ' + done + ' of ' + (done + failed.length) + '; these failed:' }), list), true);
    }
    return true;
  }

  // ---------- field errors ----------

  function clearErrors(form) {
    for (const p of form.querySelectorAll('.field-error, .error')) {
      p.textContent = '';
      show(p, false);
    }
    for (const f of form.querySelectorAll('.has-error')) f.classList.remove('has-error');
  }

  // showError puts an API error next to the field it names (ip_allowlist[2]
  // goes to ip_allowlist, rate_limit.rps to rate_limit), or in the form's
  // general error line.
  function showError(form, generalSel, err) {
    if (err.field) {
      const root = err.field.replace(/[[.].*$/, '');
      for (const f of form.querySelectorAll('[data-field]')) {
        if (f.dataset.field === root || f.dataset.alias === root) {
          const p = f.querySelector('.field-error');
          p.textContent = err.field + ': ' + err.message;
          show(p, true);
          f.classList.add('has-error');
          const input = f.querySelector('input, textarea');
          if (input) input.focus();
          return;
        }
      }
    }
    const g = form.querySelector(generalSel) || $(generalSel);
    g.textContent = err.describe();
    show(g, true);
  }

  // ---------- create / edit ----------

  function isoDate(d) {
    return d.toISOString().slice(0, 10);
  }

  function openCreate() {
    state.editing = null;
    const form = $('#key-form');
    form.reset();
    clearErrors(form);
    $('#key-dialog-title').textContent = 'New key';
    $('#key-submit').textContent = 'Create';
    $('#exp-keep-text').textContent = 'server default';
    $('#exp-keep').checked = true;
    $('#f-date').value = isoDate(new Date(Date.now() + 90 * 864e5));
    $('#key-dialog').showModal();
    $('#f-name').focus();
  }

  function openEdit(k) {
    state.editing = k;
    const form = $('#key-form');
    form.reset();
    clearErrors(form);
    $('#key-dialog-title').textContent = 'Edit ' + k.name;
    $('#key-submit').textContent = 'Save';
    $('#f-name').value = k.name;
    $('#f-user').value = k.user;
    $('#f-application').value = k.application || '';
    $('#f-tenant').value = k.tenant || '';
    $('#f-description').value = k.description || '';
    $('#f-scopes').value = (k.scopes || []).join(' ');
    $('#f-ips').value = (k.ip_allowlist || []).join(' ');
    $('#exp-keep-text').textContent = 'keep (' + (k.expires_at ? fmtTime(k.expires_at) : 'never') + ')';
    $('#exp-keep').checked = true;
    $('#f-date').value = k.expires_at ? k.expires_at.slice(0, 10) : isoDate(new Date(Date.now() + 90 * 864e5));
    $('#f-rps').value = k.rate_limit ? String(k.rate_limit.rps) : '';
    $('#f-burst').value = k.rate_limit ? String(k.rate_limit.burst) : '';
    $('#key-dialog').showModal();
    $('#f-name').focus();
  }

  // formValues reads the form; expiry and rate limit are returned as the
  // JSON they would be sent as (undefined: not set by the form).
  function formValues() {
    const v = {
      name: $('#f-name').value.trim(),
      user: $('#f-user').value.trim(),
      application: $('#f-application').value.trim(),
      tenant: $('#f-tenant').value.trim(),
      description: $('#f-description').value.trim(),
      scopes: splitList($('#f-scopes').value),
      ip_allowlist: splitList($('#f-ips').value),
    };
    const exp = (document.querySelector('input[name="expiry"]:checked') || {}).value;
    if (exp === 'days') {
      v.expires_in = String($('#f-days').value).trim() + 'd';
    } else if (exp === 'date') {
      const d = $('#f-date').value;
      // The end of that day in the browser's time zone, sent as UTC.
      const t = d ? new Date(d + 'T23:59:59') : null;
      v.expires_at = t && !isNaN(t) ? t.toISOString().replace(/\.\d+Z$/, 'Z') : d;
    } else if (exp === 'never') {
      v.expires_at = null;
    }
    const rps = $('#f-rps').value.trim();
    const burst = $('#f-burst').value.trim();
    v.rate_limit = rps === '' && burst === '' ? null : { rps: Number(rps || 0), burst: Number(burst || 0) };
    return v;
  }

  function createBody(v) {
    const b = { name: v.name, user: v.user };
    for (const f of ['application', 'tenant', 'description']) if (v[f]) b[f] = v[f];
    for (const f of ['scopes', 'ip_allowlist']) if (v[f].length) b[f] = v[f];
    if ('expires_in' in v) b.expires_in = v.expires_in;
    if ('expires_at' in v) b.expires_at = v.expires_at;
    if (v.rate_limit) b.rate_limit = v.rate_limit;
    return b;
  }

  // patchBody is a JSON merge patch of the fields the form changed.
  function patchBody(k, v) {
    const p = {};
    for (const f of ['name', 'user', 'application', 'tenant', 'description']) {
      if (v[f] !== (k[f] || '')) p[f] = v[f];
    }
    for (const f of ['scopes', 'ip_allowlist']) {
      if (!sameList(v[f], k[f])) p[f] = v[f];
    }
    if ('expires_in' in v) p.expires_in = v.expires_in;
    if ('expires_at' in v && v.expires_at !== k.expires_at) p.expires_at = v.expires_at;
    const cur = k.rate_limit;
    if (v.rate_limit === null) {
      if (cur) p.rate_limit = null;
    } else if (!cur || cur.rps !== v.rate_limit.rps || cur.burst !== v.rate_limit.burst) {
      p.rate_limit = v.rate_limit;
    }
    return p;
  }

  async function submitKey(ev) {
    ev.preventDefault();
    const form = $('#key-form');
    clearErrors(form);
    const v = formValues();
    const btn = $('#key-submit');
    btn.disabled = true;
    try {
      if (state.editing) {
        const k = state.editing;
        const patch = patchBody(k, v);
        if (Object.keys(patch).length === 0) {
          $('#key-dialog').close();
          notice('Nothing changed.');
          return;
        }
        const r = await api('PATCH', '/v1/keys/' + encodeURIComponent(k.id), patch);
        $('#key-dialog').close();
        replaceKey(r.key);
        notice('Saved ' + r.key.name + '.');
      } else {
        const r = await api('POST', '/v1/keys', createBody(v));
        $('#key-dialog').close();
        const ctx = 'Key ' + r.key.name + ' (' + r.key.hint + ') was created.' +
          ((r.warnings || []).length ? ' Warning: ' + r.warnings.join(' ') : '');
        showSecret(r.secret, ctx);
        reload();
      }
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) showError(form, '#key-form-error', err);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------- the copy-once secret dialog ----------

  function showSecret(secret, context) {
    $('#secret-value').textContent = secret;
    $('#secret-context').textContent = context;
    $('#secret-copy-status').textContent = '';
    $('#secret-dialog').showModal();
  }

  function forgetSecret() {
    // Nothing else holds the secret: the response object that carried it
    // is out of scope once showSecret returned.
    $('#secret-value').textContent = '';
    $('#secret-context').textContent = '';
    $('#secret-copy-status').textContent = '';
  }

  async function copySecret() {
    const s = $('#secret-value').textContent;
    const status = $('#secret-copy-status');
    if (!s) return;
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(s);
      status.textContent = 'Copied to the clipboard.';
    } catch (e) {
      // The Clipboard API needs a secure context (HTTPS or localhost); on
      // a plain-HTTP admin listener select the text for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents($('#secret-value'));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      status.textContent = 'The browser refused clipboard access: the key is selected, press Ctrl+C (⌘C) to copy it.';
    }
  }

  // ---------- rotate ----------

  function openRotate(k) {
    state.rotating = k;
    const form = $('#rotate-form');
    form.reset();
    clearErrors(form);
    $('#rotate-title').textContent = 'Rotate ' + k.name;
    $('#rotate-text').textContent = 'Issue a new secret for ' + k.name + ' (' + k.hint + '). Clients must move to the new secret before the grace period ends.';
    $('#rotate-dialog').showModal();
    $('#f-grace').focus();
  }

  async function submitRotate(ev) {
    ev.preventDefault();
    const form = $('#rotate-form');
    clearErrors(form);
    const k = state.rotating;
    const grace = $('#f-grace').value.trim();
    const btn = $('#rotate-submit');
    btn.disabled = true;
    try {
      const r = await api('POST', '/v1/keys/' + encodeURIComponent(k.id) + '/rotate', grace ? { grace } : {});
      $('#rotate-dialog').close();
      const prev = r.previous_expires_at ? 'The previous secret keeps working until ' + fmtTime(r.previous_expires_at) + '.' : 'The previous secret no longer works.';
      showSecret(r.secret, 'Key ' + r.key.name + ' was rotated; its hint is now ' + r.key.hint + '. ' + prev);
      replaceKey(r.key);
    } catch (err) {
      if (err.status !== 401 && err.status !== 403) showError(form, '#rotate-error', err);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------- delete (one or bulk) with confirmation ----------

  // askConfirm opens the confirmation dialog: OK runs action (its error is
  // shown in the dialog); closing it any other way runs onCancel.
  function askConfirm(title, text, okLabel, action, onCancel) {
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = text;
    $('#confirm-ok').textContent = okLabel;
    show($('#confirm-error'), false);
    state.confirmAction = action;
    state.confirmCancel = onCancel || null;
    $('#confirm-dialog').showModal();
  }

  async function runConfirm() {
    const fn = state.confirmAction;
    if (!fn) return;
    const btn = $('#confirm-ok');
    btn.disabled = true;
    try {
      await fn();
      state.confirmAction = null;
      state.confirmCancel = null;
      $('#confirm-dialog').close();
    } catch (err) {
      const e = $('#confirm-error');
      e.textContent = err.describe ? err.describe() : String(err);
      show(e, true);
    } finally {
      btn.disabled = false;
    }
  }

  function confirmClosed() {
    const cancel = state.confirmAction ? state.confirmCancel : null;
    state.confirmAction = null;
    state.confirmCancel = null;
    if (cancel) cancel();
  }

  // confirmDelete asks before deleting keys: one row's key, or (selection
  // true) the selected keys through the bulk endpoint.
  function confirmDelete(keys, selection) {
    if (keys.length === 0) return;
    const ids = keys.map((k) => k.id);
    const text = (keys.length === 1
      ? 'Delete key ' + keys[0].name + ' (' + keys[0].hint + ')? Clients using it are refused at once. This cannot be undone.'
      : 'Delete ' + keys.length + ' keys? Clients using them are refused at once. This cannot be undone.') + selfNote(ids, 'deleting it');
    const title = keys.length === 1 ? 'Delete key' : 'Delete ' + keys.length + ' keys';
    askConfirm(title, text, 'Delete', async () => {
      if (!selection) {
        const k = keys[0];
        await api('DELETE', '/v1/keys/' + encodeURIComponent(k.id));
        state.selected.delete(k.id);
        await loadKeys(true);
        notice('Deleted ' + k.name + '.');
      } else {
        await bulk('delete');
      }
    });
  }

  // bulkDisable disables the selection, asking first when it includes
  // the key the console is signed in with.
  function bulkDisable() {
    const ids = [...state.selected];
    const note = selfNote(ids, 'disabling it');
    if (!note) {
      bulk('disable');
      return;
    }
    askConfirm('Disable ' + ids.length + (ids.length === 1 ? ' key' : ' keys'), 'Disable the selected keys?' + note, 'Disable', () => bulk('disable'));
  }

  // ---------- wiring ----------

  function init() {
    $('#signin-form').addEventListener('submit', signIn);
    $('#signout').addEventListener('click', () => signOut(''));
    $('#search').addEventListener('input', scheduleSearch);
    $('#status-filter').addEventListener('change', reload);
    $('#load-more').addEventListener('click', () => loadKeys(false));
    $('#new-key').addEventListener('click', openCreate);
    $('#key-form').addEventListener('submit', submitKey);
    $('#rotate-form').addEventListener('submit', submitRotate);
    $('#confirm-ok').addEventListener('click', runConfirm);
    // Escape; the close event would come a task later, after a new
    // confirmation may already have been asked.
    $('#confirm-dialog').addEventListener('cancel', confirmClosed);
    $('#secret-copy').addEventListener('click', copySecret);
    // However the dialog closes (button, Escape), the secret goes with it,
    // at once: the close event itself only fires a task later.
    $('#secret-done').addEventListener('click', () => {
      forgetSecret();
      $('#secret-dialog').close();
    });
    $('#secret-dialog').addEventListener('cancel', forgetSecret);
    $('#secret-dialog').addEventListener('close', forgetSecret);
    $('#select-all').addEventListener('change', (e) => selectAll(e.target.checked));
    $('#bulk-enable').addEventListener('click', () => bulk('enable'));
    $('#bulk-disable').addEventListener('click', bulkDisable);
    $('#bulk-delete').addEventListener('click', () => confirmDelete([...state.selected].map((id) => state.keys.get(id)).filter(Boolean), true));
    $('#bulk-clear').addEventListener('click', () => selectAll(false));
    for (const b of document.querySelectorAll('dialog [data-close]')) {
      b.addEventListener('click', () => {
        const d = b.closest('dialog');
        if (d.id === 'confirm-dialog') confirmClosed();
        d.close();
      });
    }
    // Picking a date or a number of days selects that expiry option.
    $('#f-days').addEventListener('input', () => { $('#exp-days').checked = true; });
    $('#f-date').addEventListener('input', () => { $('#exp-date').checked = true; });

    if (adminKey()) enterConsole();
    else signOut('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
