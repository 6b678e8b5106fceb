// Shared by the browser tests (chat.mjs, live.mjs): Debian's Chromium,
// headless, driven by playwright-core; pages tracked for their console and
// screenshots on failure; signing in through the demo page's form.
//
// Environment: ZIM_CHROMIUM (default /usr/bin/chromium); ZIM_SHOTS, a
// directory for screenshots and page logs on failure (default .);
// ZIM_NODE_MODULES, where playwright-core is (default: sdk/js/node_modules).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const T = 15000; // per step

/** Starts Chromium; resolves with the harness: { browser, pages, logs,
    track(name, page), signIn(context, name), report(err, step, prefix),
    close() }. */
export async function launch(url, { prefix = 'browser' } = {}) {
    const modules = process.env.ZIM_NODE_MODULES ?? fileURLToPath(new URL('../../node_modules', import.meta.url));
    const { chromium } = createRequire(join(modules, 'noop.js'))('playwright-core');
    const shots = process.env.ZIM_SHOTS ?? '.';
    const profile = mkdtempSync(join(tmpdir(), 'zim-chromium-'));
    const browser = await chromium.launch({
        executablePath: process.env.ZIM_CHROMIUM ?? '/usr/bin/chromium',
        headless: true,
        args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
        ],
        // playwright runs chromium with a fresh --user-data-dir of its own;
        // temp files go under `profile`, removed at the end.
        env: { ...process.env, TMPDIR: profile },
    });
    const h = {
        browser,
        pages: {}, // name -> page (the current one)
        logs: [], // console and page errors of all pages
        track(name, page) {
            h.pages[name] = page;
            page.setDefaultTimeout(T);
            page.on('console', (m) => h.logs.push(`[${name}] ${m.type()}: ${m.text()}`));
            page.on('pageerror', (e) => h.logs.push(`[${name}] pageerror: ${e.message}`));
            return page;
        },
        async signIn(context, name) {
            const page = h.track(name, await context.newPage());
            await page.goto(url);
            await page.fill('#uid', name);
            await page.click('#login button[type=submit]');
            await page.waitForSelector('#status[data-state="authenticated"]', { timeout: T });
            return page;
        },
        // Throws when a page reported an uncaught error.
        checkPageErrors() {
            const errors = h.logs.filter((l) => / pageerror: /.test(l));
            if (errors.length) throw new Error(`errors in the pages:\n${errors.join('\n')}`);
        },
        // Screenshots of the open pages and their console, after a failure.
        async report(err, step) {
            console.error(`not ok - step "${step}": ${err.message}`);
            mkdirSync(shots, { recursive: true });
            for (const [name, page] of Object.entries(h.pages)) {
                if (page.isClosed()) continue;
                const file = join(shots, `${prefix}-${name}.png`);
                await page.screenshot({ path: file, fullPage: true }).then(
                    () => console.error(`    screenshot: ${file}`),
                    () => {},
                );
            }
            const logFile = join(shots, `${prefix}-console.log`);
            writeFileSync(logFile, h.logs.join('\n') + '\n');
            console.error(`    page console: ${logFile}`);
        },
        async close() {
            await browser.close();
            rmSync(profile, { recursive: true, force: true });
        },
    };
    return h;
}

// The messages of the open conversation: [{text, me, status}].
export function messages(page) {
    return page.$$eval('#messages .msg', (divs) =>
        divs.map((d) => ({ text: d.firstChild.textContent, me: d.classList.contains('me'), status: d.dataset.status })),
    );
}

// Waits until the open conversation shows exactly these texts, in order.
export async function waitTexts(page, texts) {
    await page.waitForFunction(
        (want) => {
            const got = [...document.querySelectorAll('#messages .msg')].map((d) => d.firstChild.textContent);
            return JSON.stringify(got) === JSON.stringify(want);
        },
        texts,
        { timeout: T },
    ).catch(async (e) => {
        throw new Error(`expected ${JSON.stringify(texts)}, page shows ${JSON.stringify((await messages(page)).map((m) => m.text))}`, { cause: e });
    });
}

// Waits until a message of mine shows one of the statuses (a string or a
// list: a message the peer has open turns "read" at once, perhaps without a
// moment as "delivered").
export async function waitStatus(page, text, status) {
    const want = [status].flat();
    await page
        .waitForFunction(
            ([t, s]) => [...document.querySelectorAll('#messages .msg.me')].some((d) => d.firstChild.textContent === t && s.includes(d.dataset.status)),
            [text, want],
            { timeout: T },
        )
        .catch(async (e) => {
            throw new Error(`"${text}" never became ${want.join(' or ')}: ${JSON.stringify(await messages(page))}`, { cause: e });
        });
}

export const ARRIVED = ['delivered', 'read'];

// Types text into the message box and sends it with Enter.
export async function send(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
}
