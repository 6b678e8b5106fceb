// Small helpers shared by the client tests.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls fn until it returns a truthy value (returned) or the time is up.
// The timeout only catches a hang, never a slow machine: it is generous,
// and once it has passed, fn gets one more look after the event loop has
// read its sockets (a test process stalled past the deadline wakes in the
// timers phase, before the input that arrived meanwhile is read).
export async function waitFor(fn, { timeout = 20000, interval = 10, what = 'condition' } = {}) {
    const end = Date.now() + timeout;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > end) {
            await new Promise((resolve) => setImmediate(resolve));
            const last = await fn();
            if (last) return last;
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(interval);
    }
}

// Records a client's events for assertions.
export function record(client) {
    const r = { states: [], messages: [], acks: [], errors: [], gaps: [] };
    client.on('state', (s) => r.states.push(s));
    client.on('message', (m) => r.messages.push(m));
    client.on('ack', (a) => r.acks.push(a));
    client.on('error', (e) => r.errors.push(e));
    client.on('gap', (g) => r.gaps.push(g));
    return r;
}

// Asserts seqs are 1..n (or from..from+n-1) without gaps or repeats.
export function contiguous(seqs, from = 1) {
    return seqs.every((s, i) => s === from + i);
}
