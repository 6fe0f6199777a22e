// Lint is part of `npm test`. The one architectural rule enforced here: the wire
// codecs in src/protocol/ stay pure (no sockets, no files), see src/ARCHITECTURE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: io.map((name) => ({ name, message: 'src/protocol is a pure codec: no I/O here.' })) }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
