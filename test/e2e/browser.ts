// Shared by the end-to-end tests: Debian's headless Chromium driven by playwright-core (no browser download), and
// screenshots. The example apps on a free port and the outbox: ../examples/serve.ts.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { describe } from 'vitest';

type Describe = typeof describe;

export const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCREENSHOTS = join(ROOT, 'test-results', 'e2e');
const DOC_IMAGES = join(ROOT, 'docs', 'images');

/**
 * `describe` when Chromium is installed; otherwise, in CI (`CI` set) it throws so the run fails, and on a
 * developer's machine it prints why and returns `describe.skip`. Never skips silently.
 */
export function describeWithChromium(what: string): Describe {
  if (existsSync(CHROMIUM)) return describe;
  const reason = `${CHROMIUM} is missing`;
  if (process.env.CI) throw new Error(`${what}: ${reason}; CI must install it (apt-get install chromium).`);
  console.warn(`[skip] ${what}: ${reason} (install it with: apt-get install chromium)`);
  return describe.skip as unknown as Describe;
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

/** Headless Chromium with a fresh profile directory, an 800×600 viewport and one page. */
export async function launchBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 800, height: 600 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Saves a screenshot to test-results/e2e/<name>.png; with `docImage` and UPDATE_DOCS_IMAGES=1, also to
 * docs/images/<docImage>.png (the README's pictures).
 */
export async function screenshot(page: Page, name: string, docImage?: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
  if (docImage && process.env.UPDATE_DOCS_IMAGES === '1') {
    mkdirSync(DOC_IMAGES, { recursive: true });
    await page.screenshot({ path: join(DOC_IMAGES, `${docImage}.png`) });
  }
}

/** The text a person sees in `locator`: rendered, whitespace collapsed, hidden parts left out. */
export function seen(locator: Locator): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright Locator, not a DOM node; the rendered text is the point.
  return locator.innerText();
}
