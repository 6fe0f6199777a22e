// Lint is part of `npm test`. The architectural rules enforced here: the layering (FORBIDDEN below) and that the wire
// codecs in src/protocol/ stay pure (no sockets, no files), see src/ARCHITECTURE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const FOLDERS = ['agent', 'cli', 'config', 'discovery', 'inbox', 'legacy', 'limits', 'osc', 'outbox', 'protocol', 'service', 'status', 'transfer', 'transport'];
const all = (...allowed) => FOLDERS.filter((f) => !allowed.includes(f));
// folder -> folders it may not import ('.' = the files directly in src/). agent/incoming.ts (the
// incoming-transfer tracker) is the one named exception for legacy/ and transfer/ below.
const FORBIDDEN = {
  '.': all('config', 'transport', 'limits'),
  protocol: all(),
  config: all(),
  limits: all(),
  service: all(),
  transport: all('protocol'),
  inbox: all('config'),
  outbox: all('config'),
  discovery: all('config', 'transport'),
  status: all('config', 'limits'),
  osc: all('config', 'limits'),
  legacy: all('config', 'limits', 'protocol', 'transport', 'inbox', 'agent'),
  transfer: all('config', 'limits', 'protocol', 'transport', 'inbox', 'legacy', 'agent'),
  agent: ['cli', 'status', 'osc', 'service'],
};
// The composition root (agent/compose.ts) builds every part, the status API and OSC included:
// it alone in agent/ may import them.
const ROOT = 'src/agent/compose.ts';
const ROOT_FORBIDDEN = ['cli', 'service'];
const TRACKER_ONLY = ['legacy', 'transfer'];

function layerRules() {
  return Object.entries(FORBIDDEN).map(([folder, banned]) => {
    const prefix = folder === '.' ? './' : '../';
    const patterns = banned.filter((b) => b !== folder).map((b) => ({
      group: [`${prefix}${b}/*`],
      message: `Layering: src/${folder === '.' ? '' : folder + '/'} may not import src/${b}/ (see "Layers" in src/ARCHITECTURE.md).`,
    }));
    if (TRACKER_ONLY.includes(folder)) {
      patterns.push({
        group: ['../agent/*', '!../agent/incoming.js'],
        message: `Layering: src/${folder}/ may import from src/agent/ only the incoming tracker (agent/incoming.ts).`,
      });
    }
    const rule = { patterns };
    if (folder === 'protocol') rule.paths = io.map((name) => ({ name, message: 'src/protocol is a pure codec: no I/O here.' }));
    const files = [folder === '.' ? 'src/*.ts' : `src/${folder}/**/*.ts`];
    return { files, ...(folder === 'agent' ? { ignores: [ROOT] } : {}), rules: { 'no-restricted-imports': ['error', rule] } };
  }).concat([{
    files: [ROOT],
    rules: { 'no-restricted-imports': ['error', { patterns: ROOT_FORBIDDEN.map((b) => ({ group: [`../${b}/*`], message: `Layering: the composition root may not import src/${b}/.` })) }] },
  }]);
}

const io = ['node:net', 'node:tls', 'node:fs', 'node:fs/promises', 'node:dgram', 'node:http', 'net', 'tls', 'fs', 'fs/promises', 'dgram', 'http'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'release/**', 'src/status/public/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Type-aware rules (issue #13 item 6): a promise nobody awaits or catches, or one passed where a
    // void callback is expected, loses its error. projectService finds tsconfig.json per file.
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test()/describe()/it() return promises the runner itself tracks.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }],
      }],
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  // The layering rule (src/ARCHITECTURE.md, "Layers"): a folder may import only the folders below it.
  // Each entry names what a folder must NOT import; layerRules() turns it into no-restricted-imports.
  ...layerRules(),
  {
    // The dashboard's browser script: plain JavaScript served as-is. Undefined names are caught
    // by tsc with the DOM's types (src/status/browser/tsconfig.json), which knows browser globals.
    files: ['src/status/browser/*.js'],
    languageOptions: { sourceType: 'script' },
    rules: { 'no-undef': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
