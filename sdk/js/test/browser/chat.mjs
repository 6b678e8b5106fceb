// End-to-end test of the demo chat page in a real browser: Debian's
// Chromium, headless, driven by playwright-core. Two browser contexts,
// alice and bob, chat through a running zim-server that serves the page;
// bob closes his page (offline), alice writes, bob comes back and both see
// the right messages in the right order with the right states.
//
//   node test/browser/chat.mjs http://127.0.0.1:PORT/
//
// Environment: ZIM_CHROMIUM (default /usr/bin/chromium); ZIM_SHOTS, a
// directory for screenshots and page logs on failure (default .);
// ZIM_NODE_MODULES, where playwright-core is (default: sdk/js/node_modules).
// Exit 0 when all is well, 1 on a failure (with what and why).
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const url = process.argv[2];
if (!url) {
    console.error('usage: node chat.mjs http://127.0.0.1:PORT/');
    process.exit(2);
}
const modules = process.env.ZIM_NODE_MODULES ?? fileURLToPath(new URL('../../node_modules', import.meta.url));
const { chromium } = createRequire(join(modules, 'noop.js'))('playwright-core');
const shots = process.env.ZIM_SHOTS ?? '.';
const T = 15000; // per step

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

const pages = {}; // name -> page (the current one)
const logs = []; // console and page errors of all pages
let step = 'start';

function track(name, page) {
    pages[name] = page;
    page.setDefaultTimeout(T);
    page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[${name}] pageerror: ${e.message}`));
    return page;
}

async function signIn(context, name) {
    const page = track(name, await context.newPage());
    await page.goto(url);
    await page.fill('#uid', name);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#status[data-state="authenticated"]', { timeout: T });
    return page;
}

// The messages of the open conversation: [{text, me, status}].
function messages(page) {
    return page.$$eval('#messages .msg', (divs) =>
        divs.map((d) => ({ text: d.firstChild.textContent, me: d.classList.contains('me'), status: d.dataset.status })),
    );
}

// Waits until the open conversation shows exactly these texts, in order.
async function waitTexts(page, texts) {
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

async function waitStatus(page, text, status) {
    await page
        .waitForFunction(
            ([t, s]) => [...document.querySelectorAll('#messages .msg.me')].some((d) => d.firstChild.textContent === t && d.dataset.status === s),
            [text, status],
            { timeout: T },
        )
        .catch(async (e) => {
            throw new Error(`"${text}" never became ${status}: ${JSON.stringify(await messages(page))}`, { cause: e });
        });
}

async function waitOnline(page, peer, state) {
    await page.waitForSelector(`#contacts li[data-peer="${peer}"][data-online="${state}"]`, { timeout: T }).catch(async (e) => {
        const html = await page.$eval('#contacts', (ul) => ul.outerHTML);
        throw new Error(`${peer} not shown as online=${state}: ${html}`, { cause: e });
    });
}

async function send(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
}

let failed = null;
try {
    const alice = await browser.newContext();
    const bob = await browser.newContext();

    step = 'both sign in';
    let a = await signIn(alice, 'alice');
    let b = await signIn(bob, 'bob');

    step = 'alice opens a chat with bob and writes; bob is online, so it is delivered';
    await a.fill('#peer', 'bob');
    await a.press('#peer', 'Enter');
    await a.waitForSelector('#conv-title:text("bob")', { timeout: T });
    await send(a, 'hi bob');
    await waitStatus(a, 'hi bob', 'delivered');

    step = 'bob sees alice among his contacts, online, with one unread message';
    await b.waitForSelector('#contacts li[data-peer="alice"] .unread:text("1")', { timeout: T });
    await waitOnline(b, 'alice', 'yes');
    await b.click('#contacts li[data-peer="alice"]');
    await waitTexts(b, ['hi bob']);

    step = 'bob answers; alice sees it and bob online';
    await send(b, 'hi alice');
    await waitStatus(b, 'hi alice', 'delivered');
    await waitTexts(a, ['hi bob', 'hi alice']);
    await waitOnline(a, 'bob', 'yes');

    step = 'bob closes his page: alice sees him offline';
    await b.close({ runBeforeUnload: true });
    await waitOnline(a, 'bob', 'no');

    step = 'alice writes while bob is away: sent, not delivered';
    await send(a, 'while you were away 1');
    await send(a, 'while you were away 2');
    await waitStatus(a, 'while you were away 2', 'sent');
    await waitTexts(a, ['hi bob', 'hi alice', 'while you were away 1', 'while you were away 2']);
    await new Promise((r) => setTimeout(r, 500));
    const away = (await messages(a)).filter((m) => m.text.startsWith('while'));
    if (away.some((m) => m.status !== 'sent')) throw new Error(`delivered while bob was away? ${JSON.stringify(away)}`);

    step = 'bob comes back: the messages that arrived while he was away, unread, then the whole history in order';
    b = await signIn(bob, 'bob');
    await b.waitForSelector('#contacts li[data-peer="alice"] .unread:text("2")', { timeout: T });
    await b.click('#contacts li[data-peer="alice"]');
    await waitTexts(b, ['hi bob', 'hi alice', 'while you were away 1', 'while you were away 2']);
    const seen = await messages(b);
    if (JSON.stringify(seen.map((m) => m.me)) !== '[false,true,false,false]') throw new Error(`wrong sides at bob: ${JSON.stringify(seen)}`);

    step = 'alice sees her away messages delivered and bob online again';
    await waitStatus(a, 'while you were away 1', 'delivered');
    await waitStatus(a, 'while you were away 2', 'delivered');
    await waitOnline(a, 'bob', 'yes');

    step = 'a reload keeps alice signed in with the same conversation';
    await a.reload();
    await a.waitForSelector('#status[data-state="authenticated"]', { timeout: T });
    await a.click('#contacts li[data-peer="bob"]');
    await waitTexts(a, ['hi bob', 'hi alice', 'while you were away 1', 'while you were away 2']);
    await waitStatus(a, 'while you were away 2', 'delivered');

    const errors = logs.filter((l) => / pageerror: /.test(l));
    if (errors.length) throw new Error(`errors in the pages:\n${errors.join('\n')}`);
    console.log('ok - demo chat in chromium: chat, presence, offline and back, history, sent/delivered');
} catch (err) {
    failed = err;
    console.error(`not ok - step "${step}": ${err.message}`);
    mkdirSync(shots, { recursive: true });
    for (const [name, page] of Object.entries(pages)) {
        if (page.isClosed()) continue;
        const file = join(shots, `browser-${name}.png`);
        await page.screenshot({ path: file, fullPage: true }).then(
            () => console.error(`    screenshot: ${file}`),
            () => {},
        );
    }
    const logFile = join(shots, 'browser-console.log');
    writeFileSync(logFile, logs.join('\n') + '\n');
    console.error(`    page console: ${logFile}`);
} finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
