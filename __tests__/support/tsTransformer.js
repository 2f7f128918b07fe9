// @ts-check
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

/**
 * ts-jest, loaded only when a file has to be compiled. Loading ts-jest loads the TypeScript compiler (9 MB of
 * JavaScript, one to two seconds of CPU on this machine), and jest loads every transformer when it starts each
 * worker and the main process, even when every file's output is already in its cache. So the cache key is made
 * here without it, from everything the output depends on (ts-jest only transpiles: tsconfig.json sets
 * isolatedModules, and types are `npm run typecheck`'s), and ts-jest is loaded on the first miss.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const version = (pkg) => JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')).version;
/** What every file's output depends on besides its own text: the compilers and the compiler options. */
const SETTINGS = [`ts-jest ${version('ts-jest')}`, `typescript ${version('typescript')}`, fs.readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')].join('\0');

/** @type {import('@jest/transform').SyncTransformer | undefined} */
let tsJest;
/** @param {unknown} options ts-jest's options from jest.config.js */
const load = (options) => (tsJest ??= require('ts-jest').default.createTransformer(options));

/** @type {import('@jest/transform').TransformerFactory<import('@jest/transform').SyncTransformer>} */
module.exports = {
  createTransformer: (options) => ({
    canInstrument: false,
    getCacheKey: (source, file, { configString, instrument }) =>
      createHash('sha256')
        .update([SETTINGS, configString, instrument ? 'instrument' : '', file, source].join('\0'))
        .digest('hex'),
    process: (source, file, transformOptions) => load(options).process(source, file, transformOptions),
  }),
};
