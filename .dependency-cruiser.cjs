/**
 * The import rules `npm run lint` checks (dependency-cruiser): no circle anywhere, and src in layers, each importing
 * only the ones below it. From the ground up: base; redis and config; pipeline (with its steps and its ports, the
 * interfaces it needs); capacity (the pace, the bill and memory, around the pipeline's image provider); events; queue; then the entry points (index.ts, worker.ts, producer.ts), cli and demo, which may import anything in src.
 * Type-only imports count: a circle of types is still a circle to read.
 */
const layer = (name, below) => ({
  name: `${name}-imports-below`,
  comment: `src/${name} imports only ${below.length ? below.join(', ') : 'itself'} in src`,
  severity: 'error',
  from: { path: `^src/${name}/` },
  to: { path: '^src/', pathNot: [`^src/${name}/`, ...below.map((b) => `^src/${b}/`)] },
});

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'src-stands-alone',
      comment: 'what ships never imports tests or benchmarks',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(__tests__|bench)/' },
    },
    {
      name: 'entry-points-on-top',
      comment: 'only the daemon (index.ts) starts the worker; only the commands use the producer helper',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/index\\.ts$', '^src/cli/'] },
      to: { path: '^src/(index|worker|producer)\\.ts$' },
    },
    layer('base', []),
    layer('redis', ['base']),
    layer('config', ['base']),
    layer('pipeline', ['base', 'redis', 'config']),
    layer('capacity', ['base', 'redis', 'pipeline']),
    layer('events', ['base', 'pipeline']),
    layer('queue', ['base', 'redis', 'config', 'capacity', 'pipeline', 'events']),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['^dist/', '^bench/\\.tmp/', 'node_modules'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
