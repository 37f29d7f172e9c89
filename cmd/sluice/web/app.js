// The auditor's page: plain DOM and inline SVG, no framework, no CDN.
// It reads the lineage API of the server that serves it, with the bearer
// token the auditor enters (kept in sessionStorage, never in a cookie).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'sluice.token';
  let token = sessionStorage.getItem(TOKEN_KEY) || '';

  // Colours of node kinds and report outcomes.
  const STYLE = {
    source: { fill: '#edf2f7', stroke: '#4a5568' },
    allow: { fill: '#f0fff4', stroke: '#38a169' },
    deny: { fill: '#fff5f5', stroke: '#e53e3e' },
    executor: { fill: '#ebf8ff', stroke: '#3182ce' },
    quarantine: { fill: '#fffaf0', stroke: '#dd6b20' },
    deadletter: { fill: '#f7fafc', stroke: '#718096' },
    object: { fill: '#faf5ff', stroke: '#805ad5' },
  };
  const OUTCOME_COLOR = { features: '#3182ce', quarantine: '#dd6b20', deadLetters: '#a0aec0' };

  // h builds an HTML element: h('td', {class: 'num'}, 'text', child...).
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function s(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function params() {
    const p = new URLSearchParams(location.search);
    for (const [k, v] of new URLSearchParams(location.hash.replace(/^#/, ''))) p.set(k, v);
    return p;
  }

  async function api(path) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(path, { headers, cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
  }

  function setStatus(id, text, isError) {
    const e = $(id);
    e.textContent = text;
    e.classList.toggle('error', !!isError);
  }

  function denied(r) {
    if (r.status === 401) return 'Enter an API token (auditor or admin) above.';
    if (r.status === 403) return 'This token may not read the lineage.';
    return '';
  }

  // wrap splits text into lines of at most n characters, at most max
  // lines; the last line ends with … when text was cut.
  function wrap(text, n, max) {
    const words = String(text).split(/\s+/).filter(Boolean);
    const lines = [];
    let cur = '';
    for (let w of words) {
      while (w.length > n) { // a very long word (a key, a hash)
        if (cur) { lines.push(cur); cur = ''; }
        lines.push(w.slice(0, n));
        w = w.slice(n);
      }
      if (cur && cur.length + 1 + w.length > n) { lines.push(cur); cur = w; } else { cur = cur ? cur + ' ' + w : w; }
    }
    if (cur) lines.push(cur);
    if (lines.length > max) {
      const kept = lines.slice(0, max);
      kept[max - 1] = kept[max - 1].slice(0, n - 1) + '…';
      return kept;
    }
    return lines;
  }

  const LINE = 15;

  // node draws a box at (x, y) of width w with a bold title and lines;
  // it returns its geometry.
  function node(parent, kind, styleKey, x, y, w, title, lines, tooltip) {
    const st = STYLE[styleKey];
    const chars = Math.floor((w - 16) / 6.6);
    const tl = wrap(title, Math.floor((w - 16) / 8), 3); // bold is wider
    const body = [];
    for (const l of lines) body.push(...wrap(l, chars, 3));
    const hgt = 10 + LINE * (tl.length + body.length) + 4;
    const g = s('g', { class: 'node', 'data-kind': kind, transform: `translate(${x},${y})` });
    if (tooltip) g.append(s('title', {}, tooltip));
    g.append(s('rect', { width: w, height: hgt, rx: 6, fill: st.fill, stroke: st.stroke, 'stroke-width': 1.5 }));
    let ty = 8 + LINE - 3;
    for (const l of tl) { g.append(s('text', { x: 8, y: ty, class: 'title' }, l)); ty += LINE; }
    for (const l of body) { g.append(s('text', { x: 8, y: ty }, l)); ty += LINE; }
    parent.append(g);
    return { x, y, w, h: hgt, g };
  }

  // centre moves a node vertically to the middle of a column of height colH.
  function centre(n, colH) {
    n.y = Math.max(10, colH / 2 - n.h / 2);
    n.g.setAttribute('transform', `translate(${n.x},${n.y})`);
  }

  function edge(parent, a, b, cls) {
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    parent.append(s('path', { class: 'edge' + (cls ? ' ' + cls : ''), d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }

  // groupDecisions merges decisions that say the same thing (one per
  // batch row group), summing their rows.
  function groupDecisions(ds) {
    const groups = new Map();
    for (const d of ds) {
      const key = JSON.stringify([d.allow, d.jurisdiction, (d.classes || []).slice().sort(), d.executor,
        d.rules || [], d.reasons || [], d.revision, d.obligations || {}]);
      let g = groups.get(key);
      if (!g) { g = { d, count: 0, rows: 0 }; groups.set(key, g); }
      g.count++;
      g.rows += d.rows || 0;
    }
    return [...groups.values()];
  }

  function shortRev(r) { return r && r.length > 20 ? r.slice(0, 19) + '…' : (r || '—'); }
  function base(k) { return String(k).split('/').pop(); }

  // graph draws source → decisions → executor (or quarantine / dead
  // letters) → objects for one lineage event.
  function graph(ev, query) {
    const f = (ev.run && ev.run.facets) || {};
    const ko = f.sluice_kafkaOffsets;
    const outcome = f.sluice_outcome ? f.sluice_outcome.kind : 'unknown';
    const decisions = (f.sluice_residencyDecision && f.sluice_residencyDecision.decisions) || [];
    const objects = (ev.outputs || []).filter((o) => o.outputFacets && o.outputFacets.sluice_object);
    const COL = [{ x: 10, w: 220 }, { x: 270, w: 330 }, { x: 650, w: 240 }, { x: 930, w: 260 }];
    const root = s('svg', { class: 'lineage-graph', xmlns: SVGNS, width: 1200, role: 'img',
      'aria-label': 'lineage graph of one event' });
    const edges = s('g', { class: 'edges' });
    const nodes = s('g', { class: 'nodes' });
    root.append(edges, nodes);

    // Column 2: decision groups, stacked.
    const groups = groupDecisions(decisions);
    let y = 10;
    const dnodes = [];
    for (const g of groups) {
      const d = g.d;
      const lines = [
        'rules: ' + ((d.rules && d.rules.length) ? d.rules.join(', ') : '(none)'),
      ];
      for (const r of d.reasons || []) lines.push('reason: ' + r);
      const ob = d.obligations || {};
      const obl = ['hash', 'mask', 'drop'].filter((k) => (ob[k] || []).length).map((k) => k + ' ' + ob[k].join(','));
      if (obl.length) lines.push('obligations: ' + obl.join('; '));
      lines.push('policy revision ' + shortRev(d.revision));
      lines.push(`${g.count} decision${g.count > 1 ? 's' : ''} · ${g.rows} rows`);
      const title = `${d.allow ? 'allow' : 'deny'} ${d.jurisdiction || '?'} [${(d.classes || []).join(', ')}] → ${d.executor}`;
      const n = node(nodes, 'decision', d.allow ? 'allow' : 'deny', COL[1].x, y, COL[1].w, title, lines,
        `decision ${d.decisionId}\nrevision ${d.revision}`);
      n.d = d;
      dnodes.push(n);
      y = n.y + n.h + 10;
    }
    const colH = Math.max(y, 120);

    // Column 1: the record and its batch.
    const srcLines = [];
    if (ko) {
      srcLines.push(`batch offsets ${ko.first}..${ko.last}`);
      srcLines.push(`this event: ${(ko.ranges || []).map((r) => r[0] === r[1] ? r[0] : r[0] + '..' + r[1]).join(', ')}`);
    }
    srcLines.push('job ' + (ev.job ? ev.job.namespace + '/' + ev.job.name : '?'));
    let srcTitle = 'record';
    if (query && query.topic) srcTitle = `record ${query.topic}/${query.partition}@${query.offset}`;
    else if (ko) srcTitle = `batch ${ko.topic}/${ko.partition}`;
    const src = node(nodes, 'source', 'source', COL[0].x, 0, COL[0].w, srcTitle, srcLines);
    centre(src, colH);

    // Column 3: what became of the rows.
    let out;
    if (outcome === 'features' && f.sluice_executor) {
      const ex = f.sluice_executor, loc = ex.location || {};
      const lines = [`${ex.kind} · location ${loc.name} (${loc.kind})`,
        [loc.provider, loc.site, loc.region].filter(Boolean).join(' '),
        `jurisdiction ${loc.jurisdiction}`, `${ex.durationMs} ms${ex.device ? ' on ' + ex.device : ''}`].filter(Boolean);
      out = node(nodes, 'executor', 'executor', COL[2].x, 0, COL[2].w, 'executor ' + ex.id, lines);
    } else {
      const reasons = (f.sluice_outcome && f.sluice_outcome.reasons) || {};
      const lines = Object.entries(reasons).sort((a, b) => b[1] - a[1]).map(([r, n]) => `${n} × ${r}`);
      const kind = outcome === 'deadLetters' ? 'deadletter' : 'quarantine';
      out = node(nodes, kind, kind, COL[2].x, 0, COL[2].w, outcome === 'deadLetters' ? 'dead letters' : outcome, lines.slice(0, 4));
    }
    centre(out, colH);

    // Column 4: the objects written.
    let oy = 10;
    const onodes = [];
    for (const o of objects) {
      const obj = o.outputFacets.sluice_object;
      const n = node(nodes, 'object', 'object', COL[3].x, oy, COL[3].w, base(obj.key),
        [`${obj.rows} rows · ${obj.bytes} bytes`, 'sha256 ' + obj.sha256.slice(0, 16) + '…', o.namespace],
        `${o.namespace}/${obj.key}\nsha256 ${obj.sha256}`);
      onodes.push(n);
      oy = n.y + n.h + 10;
    }
    if (onodes.length === 1) centre(onodes[0], colH);

    // Edges: the record to each decision; an allow for the executor that
    // ran to it; a deny to the quarantine (dashed) when rows were
    // quarantined; the outcome to each object.
    for (const n of dnodes) {
      edge(edges, src, n, n.d.allow ? '' : 'deny');
      if (n.d.allow && outcome === 'features' && f.sluice_executor && n.d.executor === f.sluice_executor.id) edge(edges, n, out);
      if (!n.d.allow && outcome === 'quarantine') edge(edges, n, out, 'deny');
    }
    if (!dnodes.length) edge(edges, src, out);
    for (const n of onodes) edge(edges, out, n);

    const height = Math.max(colH, oy, out.y + out.h + 10, src.y + src.h + 10);
    root.setAttribute('height', height);
    root.setAttribute('viewBox', `0 0 1200 ${height}`);
    return root;
  }

  function decisionTable(ds) {
    const t = h('table', { class: 'decisions' },
      h('tr', {}, ...['verdict', 'jurisdiction', 'classes', 'executor', 'rows', 'rules', 'reasons', 'obligations', 'policy revision', 'decision id'].map((c) => h('th', {}, c))));
    for (const d of ds) {
      const ob = d.obligations || {};
      t.append(h('tr', {},
        h('td', { class: d.allow ? 'allow' : 'deny' }, d.allow ? 'allow' : 'deny'),
        h('td', {}, d.jurisdiction || '—'),
        h('td', {}, (d.classes || []).join(', ')),
        h('td', {}, d.executor),
        h('td', { class: 'num' }, d.rows),
        h('td', { class: 'rule' }, (d.rules || []).join(', ') || '—'),
        h('td', {}, (d.reasons || []).join('; ') || '—'),
        h('td', {}, ['hash', 'mask', 'drop'].filter((k) => (ob[k] || []).length).map((k) => k + ': ' + ob[k].join(', ')).join('; ') || '—'),
        h('td', { class: 'mono' }, d.revision),
        h('td', { class: 'mono' }, d.decisionId)));
    }
    return t;
  }

  async function doTrace(q) {
    const box = $('trace');
    box.textContent = '';
    let path, what;
    if (q.object) {
      path = '/api/v1/trace?object=' + encodeURIComponent(q.object);
      what = 'object ' + q.object;
    } else {
      path = `/api/v1/trace?topic=${encodeURIComponent(q.topic)}&partition=${encodeURIComponent(q.partition)}&offset=${encodeURIComponent(q.offset)}`;
      what = `record ${q.topic}/${q.partition}@${q.offset}`;
    }
    setStatus('trace-status', 'Tracing ' + what + '…');
    const r = await api(path);
    if (denied(r)) { setStatus('trace-status', denied(r), true); return; }
    if (r.status === 404) { setStatus('trace-status', `No lineage event covers ${what}.`, true); return; }
    if (r.status !== 200 || !r.body) { setStatus('trace-status', `Trace failed: ${(r.body && r.body.error) || 'HTTP ' + r.status}`, true); return; }
    const evs = r.body.events || [];
    let note = '';
    if (evs.length > 1) note = q.object ? ' (one per object of that name)' : ' (a replay recorded the record again)';
    setStatus('trace-status', `${what}: ${evs.length} lineage event${evs.length === 1 ? '' : 's'}${note}`);
    for (const ev of evs) {
      const f = ev.run.facets || {};
      const div = h('div', { class: 'event' });
      const chain = f.sluice_chain ? ` · chain seq ${f.sluice_chain.seq}` : '';
      div.append(h('p', { class: 'event-meta' },
        `outcome ${f.sluice_outcome ? f.sluice_outcome.kind : '?'} · run ${ev.run.runId} · ${ev.eventTime}${chain}`));
      div.append(graph(ev, q.object ? null : q));
      const ds = (f.sluice_residencyDecision && f.sluice_residencyDecision.decisions) || [];
      if (ds.length) {
        div.append(h('h3', {}, `Policy decisions (${ds.length})`));
        div.append(h('div', { class: 'scroll' }, decisionTable(ds)));
      }
      box.append(div);
    }
  }

  async function loadReport() {
    const r = await api('/api/v1/report');
    if (denied(r)) { setStatus('report-status', denied(r), true); return; }
    if (r.status !== 200 || !r.body) { setStatus('report-status', `Report failed: ${(r.body && r.body.error) || 'HTTP ' + r.status}`, true); return; }
    const rep = r.body;
    setStatus('report-status', `${rep.events} lineage events; rows per data jurisdiction, outcome and executor.`);
    // Bar chart: one bar per row of the report.
    const rows = rep.rows || [];
    const maxRows = Math.max(1, ...rows.map((x) => x.rows));
    const BAR = 18, GAP = 6, LABEL = 330, MAXW = 720;
    const height = rows.length * (BAR + GAP) + 30;
    const chart = s('svg', { class: 'report-chart', xmlns: SVGNS, width: 1200, height, viewBox: `0 0 1200 ${height}`,
      role: 'img', 'aria-label': 'rows per jurisdiction, outcome and executor' });
    rows.forEach((x, i) => {
      const y = i * (BAR + GAP) + 4;
      const w = Math.max(2, Math.round(MAXW * x.rows / maxRows));
      const label = `${x.jurisdiction || '—'} · ${x.outcome} · ${x.executor || '—'}`;
      chart.append(s('text', { x: LABEL - 8, y: y + BAR - 5, 'text-anchor': 'end' }, label));
      chart.append(s('rect', { class: 'bar', 'data-outcome': x.outcome, 'data-rows': x.rows, x: LABEL, y, width: w, height: BAR,
        fill: OUTCOME_COLOR[x.outcome] || '#718096' }, s('title', {}, `${label}: ${x.rows} rows`)));
      chart.append(s('text', { x: LABEL + w + 6, y: y + BAR - 5, class: 'muted' }, x.rows));
    });
    let lx = LABEL, ly = rows.length * (BAR + GAP) + 16;
    for (const [k, c] of Object.entries(OUTCOME_COLOR)) {
      chart.append(s('rect', { x: lx, y: ly - 10, width: 12, height: 12, fill: c }));
      chart.append(s('text', { x: lx + 16, y: ly, class: 'muted' }, k));
      lx += 120;
    }
    const cbox = $('report-chart');
    cbox.textContent = '';
    cbox.append(chart);

    const t = $('report-table');
    t.textContent = '';
    t.append(h('tr', {}, ...['jurisdiction', 'outcome', 'executor', 'location', 'rows'].map((c) => h('th', {}, c))));
    for (const x of rows) {
      t.append(h('tr', {}, h('td', {}, x.jurisdiction || '—'), h('td', {}, x.outcome), h('td', {}, x.executor || '—'),
        h('td', {}, x.location || '—'), h('td', { class: 'num' }, x.rows)));
    }
    const rt = $('rules-table');
    rt.textContent = '';
    rt.append(h('tr', {}, ...['rule', 'decisions', 'allowed', 'denied'].map((c) => h('th', {}, c))));
    for (const x of rep.rules || []) {
      rt.append(h('tr', {}, h('td', { class: 'rule' }, x.rule), h('td', { class: 'num' }, x.decisions),
        h('td', { class: 'num' }, x.allowed), h('td', { class: 'num' }, x.denied)));
    }
  }

  async function loadResidency() {
    const r = await api('/api/v1/residency');
    const e = $('residency-status');
    if (denied(r) || r.status !== 200 || !r.body) { e.textContent = ''; return; }
    const m = r.body;
    e.textContent = '';
    e.classList.toggle('error', m.violationRows > 0);
    e.append(h('strong', { id: 'violations' }, `${m.violationRows} of ${m.processedRows} feature rows`),
      ' were processed where their policy decision did not allow it.');
    if ((m.violations || []).length) {
      const ul = h('ul', {});
      for (const v of m.violations) {
        ul.append(h('li', {}, `${v.topic}/${v.partition}@${v.first}..${v.last}: ${v.jurisdiction || '?'} [${(v.classes || []).join(', ')}] ` +
          `processed by ${v.executor} at ${v.location}` + (v.reason ? ` (${v.reason})` : '') + ` · segment ${v.segment}`));
      }
      e.append(ul);
    }
  }

  async function loadVerify() {
    const badge = $('verify-badge'), detail = $('verify-detail');
    badge.className = 'badge pending';
    badge.textContent = 'verify: checking…';
    const r = await api('/api/v1/verify');
    if (denied(r) || r.status !== 200 || !r.body) {
      badge.textContent = 'verify: unknown';
      detail.textContent = denied(r) || `Verify failed: ${(r.body && r.body.error) || 'HTTP ' + r.status}`;
      detail.classList.add('error');
      return;
    }
    const v = r.body;
    badge.className = 'badge ' + (v.ok ? 'ok' : 'failed');
    badge.textContent = v.ok ? 'lineage verified' : 'lineage FAILED verification';
    detail.classList.toggle('error', !v.ok);
    detail.textContent = '';
    const commits = v.commits === 'checked'
      ? 'Signatures, hash chains, offset coverage and the consumer group\'s committed offsets checked by the server.'
      : 'Signatures, hash chains and offset coverage checked by the server; the consumer group\'s commits were not (serve --spec checks them).';
    detail.append(h('p', { id: 'verify-summary' }, `${v.ok ? 'OK' : 'FAILED'}: ${v.chains} chains, ${v.segments} segments, ` +
      `${v.events} events, ${v.replays} replays. ${commits}`));
    if ((v.problems || []).length) {
      const ul = h('ul', {});
      for (const p of v.problems) ul.append(h('li', {}, p));
      detail.append(ul);
    }
  }

  function currentQuery() {
    const q = { topic: $('topic').value.trim(), partition: $('partition').value.trim(), offset: $('offset').value.trim(), object: $('object').value.trim() };
    if (q.object) return { object: q.object };
    if (q.topic && q.partition !== '' && q.offset !== '') return q;
    return null;
  }

  async function refresh() {
    const done = [];
    const q = currentQuery();
    const jobs = [loadVerify().then(() => done.push('verify')), loadReport().then(() => done.push('report')),
      loadResidency()];
    if (q) jobs.push(doTrace(q).then(() => done.push('trace')));
    await Promise.allSettled(jobs);
    // Lets a headless browser (and a curious human) see that every load
    // has finished.
    document.body.setAttribute('data-loaded', done.sort().join(' '));
  }

  function init() {
    const p = params();
    if (p.has('token')) {
      // A token in the fragment is never sent to the server; keep it for
      // this tab only and take it out of the address bar.
      token = p.get('token');
      sessionStorage.setItem(TOKEN_KEY, token);
      const hp = new URLSearchParams(location.hash.replace(/^#/, ''));
      hp.delete('token');
      history.replaceState(null, '', location.pathname + location.search + (hp.toString() ? '#' + hp : ''));
    }
    for (const k of ['topic', 'partition', 'offset', 'object']) if (p.has(k)) $(k).value = p.get(k);
    $('token').value = token;
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      token = $('token').value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      refresh();
    });
    $('search').addEventListener('submit', (e) => {
      e.preventDefault();
      const q = currentQuery();
      if (!q) { setStatus('trace-status', 'Give topic, partition and offset, or an object key.', true); return; }
      history.replaceState(null, '', location.pathname + '#' + new URLSearchParams(q));
      doTrace(q);
    });
    refresh();
  }

  init();
})();
