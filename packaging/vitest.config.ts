import { defineConfig } from 'vitest/config';

// The packaging checks (packaging/*.test.ts) until the root vitest.config.ts includes them:
//   npx vitest run --config packaging/vitest.config.ts
export default defineConfig({
  test: { root: new URL('..', import.meta.url).pathname, include: ['packaging/**/*.test.ts'], testTimeout: 60_000, pool: 'forks' },
});
