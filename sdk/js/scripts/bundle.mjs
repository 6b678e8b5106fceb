// Builds demo/zim-client.js: the SDK and @msgpack/msgpack in one browser ES
// module. The demo page imports it and the gateway serves it at
// /zim-client.js; it is checked in, so `tools/dev run` needs no npm.
// Rebuild it (npm run build) after changing src/.
import { build } from 'esbuild';

await build({
    entryPoints: ['src/index.ts'],
    outfile: 'demo/zim-client.js',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    sourcemap: false,
    legalComments: 'eof',
    external: ['ws'], // Node only, loaded lazily when there is no global WebSocket
    logLevel: 'warning',
});
