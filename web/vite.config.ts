import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// The server serves dist/ (embedded by web/embed.go): index.html on the
// client's routes and the hashed files under /app/ (GraphiQL has /assets/).
// dist/README.md is a committed placeholder, so the build leaves it alone
// (the build script clears dist/app itself).
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    assetsDir: 'app',
    emptyOutDir: false,
    modulePreload: { polyfill: false }, // an inline-free build; Chromium, Firefox and Safari preload modules natively
    chunkSizeWarningLimit: 2000,
  },
  server: {
    proxy: { '/graphql': { target: 'http://localhost:8080', ws: true } },
  },
  test: {
    include: ['src/**/*.test.ts'],
  },
});
