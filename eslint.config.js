// Lint rules: the recommended sets, type-aware where it catches real bugs (floating promises), and
// the layering of DESIGN.md: lib/ imports no process folder, and no process folder imports another.
// cmd/ (which maps commands to processes) and dev/ (which runs them all in one) are above them.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const PROCESSES = ['api', 'sender', 'smtp', 'submission', 'operator'];
const ABOVE = ['cmd', 'dev'];

/** Import specifiers that reach `folders` from a file one or two levels deep in another folder. */
const reaching = (folders) => folders.flatMap((f) => [`../${f}/**`, `../../${f}/**`, `../../../${f}/**`]);

const layering = [
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: reaching([...PROCESSES, ...ABOVE]),
              message: 'lib/ is the bottom layer: it imports no process folder (see DESIGN.md).',
            },
          ],
        },
      ],
    },
  },
  ...PROCESSES.map((process) => ({
    files: [`${process}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: reaching([...PROCESSES.filter((p) => p !== process), ...ABOVE]),
              message: `${process}/ imports no other process folder; shared code belongs in lib/ (see DESIGN.md).`,
            },
          ],
        },
      ],
    },
  })),
];

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bin/', '.dev/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test() and describe() return promises the runner awaits itself.
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'describe', 'it', 'suite', 'before', 'after'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layering,
);
