import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['gateway/**/*.test.ts', 'drivers/**/*.test.ts', 'simulator/**/*.test.ts', 'test/**/*.test.ts', 'packaging/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
