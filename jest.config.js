/** @type {import('jest').Config} */
module.exports = {
  // ts-jest compiles each file on its own (tsconfig.json sets isolatedModules), without type checking: types are
  // checked once, by `npm run typecheck`, not again in every jest worker. It is loaded only when a file is not in
  // jest's cache yet (support/tsTransformer.js).
  transform: { '^.+\\.ts$': ['<rootDir>/__tests__/support/tsTransformer.js', {}] },
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  // A private Redis; dist built only when a selected test runs it and the sources changed (support/compiledOutput.ts).
  globalSetup: '<rootDir>/__tests__/support/globalSetup.ts',
  globalTeardown: '<rootDir>/__tests__/support/globalTeardown.ts',
  // Fails any test that leaves a worker, notifier or test system open.
  setupFilesAfterEnv: ['<rootDir>/__tests__/support/leakCheck.ts'],
  testTimeout: 30000,
  // The integration suites wait on leases, timers, child workers and Redis, and the rest is CPU (module loading,
  // Node processes): 5 files at once keeps both cores busy. Measured on two cores with a warm cache, alternating
  // runs: 4 at once 29 s, 5 at once 25-29 s, 6 at once 28-29 s.
  maxWorkers: 5,
};
