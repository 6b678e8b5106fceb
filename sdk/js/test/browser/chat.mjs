// End-to-end test of the demo chat page in a real browser: Debian's
// Chromium, headless, driven by playwright-core. Two browser contexts,
// alice and bob, chat through a running zim-server that serves the page;
// bob closes his page (offline), alice writes, bob comes back and both see
// the right messages in the right order with the right states.
//
//   node test/browser/chat.mjs http://127.0.0.1:PORT/
//
// Environment: see harness.mjs. Exit 0 when all is well, 1 on a failure
// (with what and why).
import { launch, messages, send, waitStatus, waitTexts, ARRIVED, T } from './harness.mjs';

const url = process.argv[2];
if (!url) {
    console.error('usage: node chat.mjs http://127.0.0.1:PORT/');
    process.exit(2);
}
const h = await launch(url, { prefix: 'browser' });
const signIn = (context, name) => h.signIn(context, name);
let step = 'start';

async function waitOnline(page, peer, state) {
    await page.waitForSelector(`#contacts li[data-peer="${peer}"][data-online="${state}"]`, { timeout: T }).catch(async (e) => {
        const html = await page.$eval('#contacts', (ul) => ul.outerHTML);
        throw new Error(`${peer} not shown as online=${state}: ${html}`, { cause: e });
    });
}

let failed = null;
try {
    const alice = await h.browser.newContext();
    const bob = await h.browser.newContext();

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
    await waitStatus(b, 'hi alice', ARRIVED);
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

    step = 'alice sees her away messages read (bob has the chat open) and bob online again';
    await waitStatus(a, 'while you were away 1', 'read');
    await waitStatus(a, 'while you were away 2', 'read');
    await waitOnline(a, 'bob', 'yes');

    step = 'a reload keeps alice signed in with the same conversation';
    await a.reload();
    await a.waitForSelector('#status[data-state="authenticated"]', { timeout: T });
    await a.click('#contacts li[data-peer="bob"]');
    await waitTexts(a, ['hi bob', 'hi alice', 'while you were away 1', 'while you were away 2']);
    await waitStatus(a, 'while you were away 2', 'read');
    await waitStatus(a, 'hi bob', 'read');

    h.checkPageErrors();
    console.log('ok - demo chat in chromium: chat, presence, offline and back, history, sent/delivered/read');
} catch (err) {
    failed = err;
    await h.report(err, step);
} finally {
    await h.close();
}
process.exit(failed ? 1 : 0);
