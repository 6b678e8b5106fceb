// End-to-end test of the demo page's live features in a real browser
// (Chromium, headless, playwright-core; see harness.mjs). Two users, carl
// and dora, in two browser contexts:
// - the lobby: both see "2 online"; a message one publishes appears at the other;
// - unread badges: from convs() at sign-in (messages sent while away) and
//   counted live; cleared when the chat is opened;
// - read ticks: the sender's messages turn "read" when the peer opens the chat;
// - typing: one types, the other sees "carl is typing…", gone ~3 s later;
// - a group chat the test makes through the admin endpoint (zimctl): its
//   message reaches the other member, with an unread badge on the group.
//
//   node test/browser/live.mjs http://127.0.0.1:PORT/
//
// Environment: ZIM_ZIMCTL (the zimctl binary), ZIM_ADMIN (the server's
// admin endpoint), ZIM_ADMIN_KEY (its key); and those of harness.mjs.
// Exit 0 when all is well, 1 on a failure (with what and why).
import { execFile } from 'node:child_process';
import { launch, messages, send, waitStatus, waitTexts, T } from './harness.mjs';

const url = process.argv[2];
const { ZIM_ZIMCTL: zimctl, ZIM_ADMIN: admin, ZIM_ADMIN_KEY: key } = process.env;
if (!url || !zimctl || !admin || !key) {
    console.error('usage: ZIM_ZIMCTL=... ZIM_ADMIN=tcp://... ZIM_ADMIN_KEY=... node live.mjs http://127.0.0.1:PORT/');
    process.exit(2);
}

function admin_(...args) {
    return new Promise((resolve, reject) =>
        execFile(zimctl, ['-e', admin, '-k', key, ...args], { timeout: 20000 }, (err, stdout, stderr) =>
            err ? reject(new Error(`zimctl ${args.join(' ')}: ${stdout}${stderr}`)) : resolve(stdout),
        ),
    );
}

const h = await launch(url, { prefix: 'live' });
let step = 'start';

// Waits for a selector, saying what the page shows around it when it fails.
async function waitSel(page, sel, what, around = '#lists', state = 'attached') {
    await page.waitForSelector(sel, { timeout: T, state }).catch(async (e) => {
        const html = await page.$eval(around, (el) => el.outerHTML).catch(() => '?');
        throw new Error(`${what} (${sel}); the page shows: ${html}`, { cause: e });
    });
}

// Waits until the badge of a list entry shows n (0: no badge).
async function waitBadge(page, entry, n) {
    await page
        .waitForFunction(
            ([sel, want]) => {
                const li = document.querySelector(sel);
                const badge = li?.querySelector('.unread');
                return li && (want === 0 ? !badge : badge?.textContent === String(want));
            },
            [entry, n],
            { timeout: T },
        )
        .catch(async (e) => {
            const html = await page.$eval('#lists', (el) => el.outerHTML).catch(() => '?');
            throw new Error(`${entry} never showed ${n ? `a badge ${n}` : 'no badge'}: ${html}`, { cause: e });
        });
}

async function openPeer(page, peer) {
    await page.fill('#peer', peer);
    await page.press('#peer', 'Enter');
    await page.waitForSelector(`#conv-title:text("${peer}")`, { timeout: T });
}

let failed = null;
try {
    step = 'the backend makes the group crew (carl, dora) through the admin endpoint';
    await admin_('groups', 'create', '--app', 'demo', '--group', 'crew', '--members', 'carl,dora');

    step = 'carl signs in and writes to dora, who is away';
    const carlCtx = await h.browser.newContext();
    const doraCtx = await h.browser.newContext();
    const c = await h.signIn(carlCtx, 'carl');
    await openPeer(c, 'dora');
    await send(c, 'are you there?');
    await waitStatus(c, 'are you there?', 'sent');

    step = 'dora signs in: an unread badge 1 on carl (from convs), the group crew listed';
    let d = await h.signIn(doraCtx, 'dora');
    await waitBadge(d, '#contacts li[data-peer="carl"]', 1);
    await waitSel(d, '#groups li[data-group="crew"][data-kind="group"]', 'crew in the groups');
    await waitSel(c, '#groups li[data-group="crew"]', 'crew in the groups');

    step = 'her client confirms arrival: carl sees "delivered"';
    await waitStatus(c, 'are you there?', 'delivered');

    step = 'carl writes again: the badge counts 2, live';
    await send(c, 'hello?');
    await waitBadge(d, '#contacts li[data-peer="carl"]', 2);

    step = 'dora opens the chat: the badge clears, both messages shown';
    await d.click('#contacts li[data-peer="carl"]');
    await waitTexts(d, ['are you there?', 'hello?']);
    await waitBadge(d, '#contacts li[data-peer="carl"]', 0);

    step = 'carl sees read ticks on both';
    await waitStatus(c, 'are you there?', 'read');
    await waitStatus(c, 'hello?', 'read');

    step = 'carl types: dora sees "carl is typing…", gone ~3 s after he stops';
    await c.locator('#text').pressSequentially('I am typ', { delay: 30 });
    await waitSel(d, '#typing:text("carl is typing")', 'the typing indicator', '#typing', 'visible');
    await waitSel(d, '#typing', 'the typing indicator gone', '#typing', 'hidden');
    await c.fill('#text', '');

    step = 'dora answers; the reply is shown at carl, read since he has the chat open';
    await send(d, 'here I am');
    await waitTexts(c, ['are you there?', 'hello?', 'here I am']);
    await waitStatus(d, 'here I am', 'read');

    step = 'the lobby: both in it, both see 2 online';
    await c.click('#rooms li[data-room="lobby"]');
    await d.click('#rooms li[data-room="lobby"]');
    for (const p of [c, d]) await waitSel(p, '#rooms li[data-room="lobby"][data-online-count="2"]', 'lobby with 2 online');
    await waitSel(d, '#conv-title:text("2 online")', 'the lobby title with its count', '#conv-title');

    step = 'carl publishes in the lobby: dora sees it, from carl';
    await send(c, 'hi lobby');
    await waitTexts(d, ['hi lobby']);
    await waitTexts(c, ['hi lobby']);
    const from = await d.$eval('#messages .msg', (m) => m.dataset.from);
    if (from !== 'carl') throw new Error(`the lobby message at dora is from ${from}`);

    step = 'carl writes in the group crew: dora gets a badge on it, opens it, sees the message from carl';
    await c.click('#groups li[data-group="crew"]');
    await send(c, 'hello crew');
    await waitStatus(c, 'hello crew', 'sent');
    await waitBadge(d, '#groups li[data-group="crew"]', 1);
    await d.click('#groups li[data-group="crew"]');
    await waitTexts(d, ['hello crew']);
    await waitBadge(d, '#groups li[data-group="crew"]', 0);
    const got = await messages(d);
    if (got[0].me) throw new Error('the group message shows as dora\'s own');
    if ((await d.$eval('#messages .msg', (m) => m.dataset.from)) !== 'carl') throw new Error('the group message is not from carl');

    step = 'dora leaves: the lobby count at carl goes back to 1';
    await d.close({ runBeforeUnload: true });
    await waitSel(c, '#rooms li[data-room="lobby"][data-online-count="1"]', 'lobby with 1 online');

    h.checkPageErrors();
    console.log('ok - demo live features in chromium: lobby and its count, unread badges, read ticks, typing, a group chat');
} catch (err) {
    failed = err;
    await h.report(err, step);
} finally {
    await h.close();
}
process.exit(failed ? 1 : 0);
