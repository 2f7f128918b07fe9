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
  // The integration suites mostly wait (on leases, timers, child workers and Redis): a whole run keeps about one of
  // the two cores busy. Measured on two cores: 3 files at once 56 s, 5 at once 40 s, 7 at once 36 s (the longest
  // file then sets the pace); 5 keeps the fault tests' short leases clear of the CPU they share.
  maxWorkers: 5,
};
