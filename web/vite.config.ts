// Vite config for the 守护 office web shell.
//
// Besides the SPA itself, the build copies the Swagger UI assets from the
// `swagger-ui-dist` package into dist/api-docs/ together with a small page that
// loads the server's OpenAPI document (/api/v1/openapi.json). In `vite dev`
// the same files are served from node_modules under /api-docs/.
import { defineConfig, type Plugin } from 'vite';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const swaggerDir = dirname(require.resolve('swagger-ui-dist/package.json'));

const SWAGGER_FILES = [
  'swagger-ui.css',
  'swagger-ui-bundle.js',
  'swagger-ui-standalone-preset.js',
  'favicon-16x16.png',
  'favicon-32x32.png',
  'oauth2-redirect.html',
  'oauth2-redirect.js',
  'LICENSE',
  'NOTICE',
];

// No inline script: keeps the page usable under a strict Content-Security-Policy.
const API_DOCS_HTML = `<!doctype html>
<html lang="zh-CN">
<head>
  <meta charset="utf-8">
  <title>守护 API 文档</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="./swagger-ui.css">
  <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
  <style>body { margin: 0; background: #fafafa; }</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="./swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="./init.js" charset="UTF-8"></script>
</body>
</html>
`;

const API_DOCS_INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({
    url: '/api/v1/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    withCredentials: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: 'StandaloneLayout'
  });
});
`;

function apiDocs(): Plugin {
  let outDir = 'dist';
  return {
    name: 'shouhu-api-docs',
    configResolved(config) {
      outDir = join(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const url = (req.url ?? '').split('?')[0];
        if (url === '/api-docs') {
          res.statusCode = 302;
          res.setHeader('Location', '/api-docs/');
          res.end();
          return;
        }
        if (!url.startsWith('/api-docs/')) return next();
        const name = url.slice('/api-docs/'.length) || 'index.html';
        const types: Record<string, string> = {
          html: 'text/html; charset=utf-8',
          js: 'text/javascript; charset=utf-8',
          css: 'text/css; charset=utf-8',
          png: 'image/png',
        };
        const ext = name.split('.').pop() ?? '';
        let body: string | Buffer | undefined;
        if (name === 'index.html') body = API_DOCS_HTML;
        else if (name === 'init.js') body = API_DOCS_INIT;
        else if (SWAGGER_FILES.includes(name)) body = readFileSync(join(swaggerDir, name));
        if (body === undefined) return next();
        res.setHeader('Content-Type', types[ext] ?? 'application/octet-stream');
        res.end(body);
      });
    },
    closeBundle() {
      if (!existsSync(outDir)) return;
      const target = join(outDir, 'api-docs');
      mkdirSync(target, { recursive: true });
      for (const f of SWAGGER_FILES) copyFileSync(join(swaggerDir, f), join(target, f));
      writeFileSync(join(target, 'index.html'), API_DOCS_HTML);
      writeFileSync(join(target, 'init.js'), API_DOCS_INIT);
    },
  };
}

// `npm run dev` proxies /api to the shouhu server; SHOUHU_API overrides the default address.
const apiTarget = process.env.SHOUHU_API ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: '/',
  plugins: [apiDocs()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 600,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false, ws: true },
    },
  },
  preview: {
    proxy: {
      '/api': { target: apiTarget, changeOrigin: false, ws: true },
    },
  },
});
