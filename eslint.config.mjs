// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/**
 * typescript-eslint's recommended rules, without type information: tsc is the type gate (`npm run typecheck`).
 * `npm run lint` runs this, then knip for unused files, exports and dependencies (knip.json).
 */
export default defineConfig(
  { ignores: ['dist/', 'coverage/', 'bench/.tmp/', 'demo-output/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A leading underscore marks a binding kept on purpose: `const { Number: _number, ...rest } = data`.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // jest.config.js, the test transformer and the import rules (.dependency-cruiser.cjs) are CommonJS, loaded as they are.
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
