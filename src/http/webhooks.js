const CSRF = document.querySelector('meta[name="csrf-token"]').content;
let selected = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function button(label, action, testid) {
  const b = el('button', label);
  b.type = 'button';
  b.onclick = action;
  if (testid) b.dataset.testid = testid;
  return b;
}

async function call(method, path, body) {
  const headers = body ? { 'content-type': 'application/json' } : {};
  if (method !== 'GET' && CSRF) headers['x-csrf-token'] = CSRF;
  const res = await fetch('/api/v1' + path, {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await res.json().catch(() => ({}));
  const problem = document.getElementById('problem');
  problem.hidden = res.ok;
  if (!res.ok) problem.textContent = (answer.error && answer.error.message) || res.statusText;
  return res.ok ? answer : null;
}

function showSecret(secret) {
  const box = document.getElementById('secret');
  box.hidden = false;
  box.querySelector('.secret').textContent = secret;
}

async function refresh() {
  const list = await call('GET', '/webhooks');
  if (!list) return;
  const rows = await Promise.all(list.data.map(async e => {
    const shown = await call('GET', '/webhooks/' + e.id);
    const rate = shown && shown.stats.success_rate;
    const tr = el('tr');
    tr.dataset.webhookId = e.id;
    tr.dataset.status = e.status;
    const name = el('td');
    name.append(el('code', e.url), el('br'), el('small', e.id));
    tr.append(name, el('td', e.events.join(', ')),
      el('td', e.status + (e.disabled_reason ? ' (' + e.disabled_reason + ')' : ''), e.status),
      el('td', rate === null || rate === undefined ? '–' : Math.round(rate * 100) + '%'));
    const actions = el('td');
    actions.append(
      button('Deliveries', () => { selected = e.id; deliveries(); }),
      e.status === 'active'
        ? button('Pause', async () => { await call('POST', `/webhooks/${e.id}/pause`); refresh(); }, 'webhook-pause')
        : button('Resume', async () => { await call('POST', `/webhooks/${e.id}/resume`); refresh(); }, 'webhook-resume'),
      button('Rotate secret', async () => {
        const r = await call('POST', `/webhooks/${e.id}/rotate`);
        if (r) showSecret(r.secret);
      }, 'webhook-rotate'),
      button('Delete', async () => {
        if (confirm('Delete ' + e.url + ' and its delivery log?')) {
          await call('DELETE', '/webhooks/' + e.id);
          if (selected === e.id) selected = null;
          refresh();
        }
      }, 'webhook-delete'));
    tr.append(actions);
    return tr;
  }));
  document.getElementById('endpoints').replaceChildren(...rows);
  deliveries();
}

async function deliveries() {
  const shown = selected !== null;
  document.getElementById('deliveries-title').hidden = !shown;
  document.getElementById('deliveries-table').hidden = !shown;
  if (!shown) return;
  const answer = await call('GET', `/webhooks/${selected}/deliveries?limit=50`);
  if (!answer) return;
  document.getElementById('deliveries-title').textContent = 'Recent deliveries to ' + selected;
  document.getElementById('deliveries').replaceChildren(...answer.data.map(d => {
    const tr = el('tr');
    const attempts = el('td');
    for (const a of d.attempts) {
      const when = new Date(a.at).toISOString().replace('T', ' ').slice(0, 19);
      const line = `#${a.attempt} ${when} → ${a.status_code ?? '–'} in ${a.latency_ms} ms` +
        (a.error ? ` · ${a.error}` : '') + (a.response_excerpt ? ` · “${a.response_excerpt.slice(0, 120)}”` : '');
      attempts.append(el('div', line, 'attempts'));
    }
    const id = el('td');
    id.append(el('small', d.id), el('br'), el('small', d.webhook_id));
    const actions = el('td');
    actions.append(button('Resend', async () => {
      await call('POST', `/webhook-deliveries/${d.id}/resend`);
      deliveries();
    }));
    tr.append(id, el('td', d.event_type), el('td', d.status, d.status), attempts, actions);
    return tr;
  }));
}

document.getElementById('add').onsubmit = async ev => {
  ev.preventDefault();
  const form = ev.target;
  const events = form.events.value.split(',').map(s => s.trim()).filter(Boolean);
  const created = await call('POST', '/webhooks', { url: form.url.value, events });
  if (created) {
    showSecret(created.secret);
    form.reset();
    refresh();
  }
};

refresh();
setInterval(refresh, 5000);
