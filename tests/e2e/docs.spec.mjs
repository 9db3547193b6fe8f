// /docs in headless Chromium with no network: Swagger UI (served from the binary) renders
// every operation of /openapi.json, loads nothing from another origin, and its
// Content-Security-Policy blocks nothing it needs.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.E2E_BASE_URL || '').replace(/\/$/, '');
if (!BASE_URL) throw new Error('E2E_BASE_URL is required');
const ARTIFACTS = process.env.E2E_ARTIFACTS || mkdtempSync(join(tmpdir(), 'lcauth-docs-'));
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const started = Date.now();
const profile = mkdtempSync(join(tmpdir(), 'lcauth-docs-profile-'));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
const page = context.pages()[0] || (await context.newPage());
const foreign = [];
const violations = [];
page.on('request', (request) => {
  if (!request.url().startsWith(BASE_URL) && !request.url().startsWith('data:')) foreign.push(request.url());
});
page.on('console', (message) => {
  if (/Content[- ]Security[- ]Policy/i.test(message.text())) violations.push(message.text());
});
await page.addInitScript(() => {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
});
try {
  const spec = await (await fetch(`${BASE_URL}/openapi.json`)).json();
  const operations = Object.values(spec.paths).flatMap((item) =>
    Object.keys(item).filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m)));
  const response = await page.goto(`${BASE_URL}/docs/`);
  if (!response || response.status() !== 200) throw new Error(`GET /docs/: ${response && response.status()}`);
  await page.locator('.opblock').first().waitFor({ timeout: 20_000 });
  await page.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n, operations.length, { timeout: 20_000 });
  const rendered = await page.locator('.opblock').count();
  const title = await page.locator('.info .title').first().innerText();
  const blocked = await page.evaluate(() => window.__violations);
  if (!title.includes('Logicredit Auth')) throw new Error(`title: ${title}`);
  if (foreign.length) throw new Error(`requests to other origins: ${foreign.join(', ')}`);
  if (blocked.length || violations.length) throw new Error(`CSP violations: ${[...blocked, ...violations].join('; ')}`);
  console.log(`ok   docs: ${rendered} operations rendered of ${operations.length} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
} catch (error) {
  const shot = join(ARTIFACTS, 'docs-failure.png');
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`FAIL docs: ${error.message}; screenshot ${shot}`);
  await context.close();
  process.exit(1);
}
await context.close();
