/**
 * The dashboard page served at `GET /`: the HTML shell and its style. Its script is
 * src/status/browser/dashboard.js, served as-is at `GET /dashboard.js` (type-checked against
 * the DOM by src/status/browser/tsconfig.json); the hooks it keeps for tests and scrapers are
 * listed there.
 */

import { packageFile } from '../build-info.js';

const STYLE = `
:root { color-scheme: dark; --bg:#111418; --panel:#1a1f26; --line:#2a313b; --fg:#e6e9ee; --dim:#8b95a3; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --acc:#4493f8; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:1rem; align-items:baseline; padding:.8rem 1.2rem; border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:1.1rem; margin:0; }
.dim { color:var(--dim); }
.badge { padding:.1rem .5rem; border-radius:.6rem; font-size:.8rem; font-weight:600; background:var(--line); }
.badge[data-ok="true"] { background:var(--ok); color:#000; }
.badge[data-ok="false"] { background:var(--bad); color:#000; }
#conn[data-state="open"] { color:var(--ok); } #conn[data-state="closed"] { color:var(--bad); }
main { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap:1rem; padding:1rem 1.2rem; }
section { background:var(--panel); border:1px solid var(--line); border-radius:.5rem; padding:.6rem .8rem; min-width:0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size:.95rem; margin:.2rem 0 .6rem; color:var(--dim); font-weight:600; text-transform:uppercase; letter-spacing:.04em; }
table { width:100%; border-collapse:collapse; }
th, td { text-align:left; padding:.25rem .4rem; border-bottom:1px solid var(--line); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; max-width:22rem; }
th { color:var(--dim); font-weight:500; font-size:.8rem; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
progress { width:10rem; height:.9rem; vertical-align:middle; accent-color: var(--acc); }
ul { list-style:none; margin:0; padding:0; max-height:22rem; overflow:auto; }
li { padding:.25rem .2rem; border-bottom:1px solid var(--line); display:flex; gap:.6rem; flex-wrap:wrap; }
li .file { font-weight:600; word-break:break-all; }
li[data-state="failed"] .file, .error, .reason { color:var(--bad); }
li[data-state="done"] .state { color:var(--ok); }
.reason { font-size:.85rem; white-space:normal; }
td.state { white-space:normal; }
td.path { max-width:30rem; }
.state-up { color:var(--ok); } .state-unreachable { color:var(--warn); } .state-gone { color:var(--dim); }
.empty { color:var(--dim); font-style:italic; }
#problems { color:var(--bad); margin:0; padding:0 1.2rem; }
`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function dashboardHtml(version: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tdxfer</title>
<style>${STYLE}</style>
</head>
<body data-version="${escapeHtml(version)}">
<header>
  <h1 id="agent-name">tdxfer</h1>
  <span id="agent-version" class="dim"></span>
  <span id="health" class="badge">…</span>
  <span id="conn" class="dim" data-state="connecting">connecting…</span>
</header>
<ul id="problems"></ul>
<main>
  <section class="wide" id="active">
    <h2>Active transfers</h2>
    <table><thead><tr><th>File</th><th>To</th><th>Progress</th><th></th><th>Bytes</th><th>Rate</th><th>ETA</th><th>State</th></tr></thead>
    <tbody id="active-body"></tbody></table>
  </section>
  <section class="wide" id="incoming">
    <h2>Incoming transfers</h2>
    <table><thead><tr><th>File</th><th>From</th><th>Inbox</th><th>Progress</th><th></th><th>Bytes</th><th>Rate</th><th>ETA</th><th></th><th>State</th></tr></thead>
    <tbody id="incoming-body"></tbody></table>
    <p id="held" class="dim" style="white-space: pre-line"></p>
  </section>
  <section class="wide" id="peers">
    <h2>Peers</h2>
    <table><thead><tr><th>Name</th><th>Address</th><th>Inboxes</th><th>Version</th><th>State</th><th>Last seen</th></tr></thead>
    <tbody id="peers-body"></tbody></table>
  </section>
  <section id="queues">
    <h2>Queues</h2>
    <table><thead><tr><th>Destination</th><th>Queued</th><th>Sending</th><th>Waiting</th><th>Failed</th></tr></thead>
    <tbody id="queues-body"></tbody></table>
  </section>
  <section id="limits">
    <h2>Bandwidth</h2>
    <table><thead><tr><th>Scope</th><th>Limit</th><th>Now</th></tr></thead>
    <tbody id="limits-body"></tbody></table>
  </section>
  <section id="recent">
    <h2>Recent transfers</h2>
    <ul id="recent-list"></ul>
  </section>
  <section id="received">
    <h2>Received</h2>
    <ul id="received-list"></ul>
  </section>
  <section class="wide" id="folders">
    <h2>Folders</h2>
    <table><thead><tr><th>Kind</th><th>Name</th><th>Path</th><th>Free</th><th>Pending</th><th>Stuck</th><th></th></tr></thead>
    <tbody id="folders-body"></tbody></table>
    <ul id="stuck-list"></ul>
  </section>
  <section class="wide" id="failures">
    <h2>Failures</h2>
    <ul id="failures-list"></ul>
  </section>
</main>
<script src="/dashboard.js" defer></script>
</body>
</html>
`;
}

/** The dashboard's script (src/status/browser/dashboard.js), read once: from the package folder, or from a single executable's bundle. */
let script: string | null = null;
export function dashboardScript(): string {
  script ??= packageFile(DASHBOARD_SCRIPT);
  return script;
}

/** Where the dashboard's script lives in the package (scripts/package.ts embeds it in executables). */
export const DASHBOARD_SCRIPT = 'src/status/browser/dashboard.js';
