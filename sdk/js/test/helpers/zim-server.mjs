// Starts and kills a real zim-server for the integration tests.
// Binary: $ZIM_SERVER, else $ZIM_BIN/zim-server, else ../../_build/zim-server
// relative to sdk/js.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signToken } from '../../dist/node.js';

const sdkDir = fileURLToPath(new URL('../../', import.meta.url));

export const serverBinary = resolve(
    sdkDir,
    process.env.ZIM_SERVER ?? (process.env.ZIM_BIN ? join(process.env.ZIM_BIN, 'zim-server') : '../../_build/zim-server'),
);

/** Why the integration tests cannot run, or null when they can. */
export function unavailable() {
    if (existsSync(serverBinary)) return null;
    return `zim-server not found at ${serverBinary} (set ZIM_SERVER)`;
}

export function tempDataDir() {
    return mkdtempSync(join(tmpdir(), 'zim-js-'));
}

export function removeDir(dir) {
    rmSync(dir, { recursive: true, force: true });
}

const READY = / ready: ws=ws:\/\/[^\s/]*:(\d+)\/ws admin=(\S+) /;

/** Starts zim-server on dataDir (port 0: any free port; extraArgs: more
    options). Resolves when it logs its ready line, with { proc, port, url,
    wssPort (with --tls-port: the WSS port from the listening line), admin,
    api (with --api in extraArgs: its http:// URL), dataDir, secret, log,
    kill(signal), exited }. */
export function startServer(dataDir, port = 0, { timeout = 20000, extraArgs = [] } = {}) {
    return new Promise((resolvePromise, reject) => {
        const args = ['--port', String(port), '--admin', 'tcp://127.0.0.1:*', '--data', dataDir, '--sync', 'none', '--api', 'none', ...extraArgs];
        const proc = spawn(serverBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let log = '';
        let done = false;
        const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
        const timer = setTimeout(() => finish(new Error(`zim-server not ready within ${timeout} ms:\n${log}`)), timeout);
        function finish(err, value) {
            if (done) return;
            done = true;
            clearTimeout(timer);
            if (err) {
                proc.kill('SIGKILL');
                reject(err);
            } else resolvePromise(value);
        }
        const onData = (chunk) => {
            log += chunk;
            if (log.length > 200000) log = log.slice(-100000);
            const m = READY.exec(log);
            if (m && !done) {
                const p = Number(m[1]);
                const secret = readFileSync(join(dataDir, 'app-demo.secret'), 'utf8').trim();
                finish(null, {
                    proc,
                    port: p,
                    url: `ws://127.0.0.1:${p}/ws`,
                    wssPort: Number((/, WSS on (\d+)/.exec(log) ?? [])[1]) || undefined,
                    admin: m[2],
                    api: (/ ready: .* api=(http:\/\/\S+)/.exec(log) ?? [])[1], // with extraArgs --api ADDR:PORT
                    dataDir,
                    secret,
                    get log() {
                        return log;
                    },
                    exited,
                    kill(signal = 'SIGTERM') {
                        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
                        return exited;
                    },
                });
            }
        };
        proc.stdout.setEncoding('utf8').on('data', onData);
        proc.stderr.setEncoding('utf8').on('data', onData);
        proc.once('exit', (code, signal) => finish(new Error(`zim-server exited (${code ?? signal}) before ready:\n${log}`)));
        proc.once('error', (err) => finish(err));
    });
}

/** Stops (SIGSTOP) a server from startServer and resolves once every
    thread of it is stopped (read from /proc; where there is none, at once):
    from then on it answers nothing until killed. */
export async function stopServer(server) {
    server.proc.kill('SIGSTOP');
    const tasks = `/proc/${server.proc.pid}/task`;
    if (!existsSync(tasks)) return;
    const stopped = () =>
        readdirSync(tasks).every((t) => {
            try {
                const stat = readFileSync(`${tasks}/${t}/stat`, 'utf8');
                return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
            } catch {
                return true; // a thread that ended
            }
        });
    const end = Date.now() + 10000;
    while (!stopped()) {
        if (Date.now() > end) throw new Error('zim-server did not stop on SIGSTOP');
        await new Promise((r) => setTimeout(r, 5));
    }
}

/** Starts on a given port, retrying while the port is still held. */
export async function restartServer(dataDir, port, tries = 20) {
    let last;
    for (let i = 0; i < tries; i++) {
        try {
            return await startServer(dataDir, port);
        } catch (err) {
            last = err;
            await new Promise((r) => setTimeout(r, 250));
        }
    }
    throw last;
}

/** Runs zimctl (beside the zim-server binary) against a server from
    startServer, with its admin key; resolves with the parsed JSON answer,
    rejects with zimctl's output when it fails. E.g.
    zimctl(server, 'groups', 'create', '--app', 'demo', '--group', 'team', '--members', 'a,b'). */
export function zimctl(server, ...args) {
    const bin = join(dirname(serverBinary), 'zimctl');
    const key = readFileSync(join(server.dataDir, 'admin.key'), 'utf8').trim();
    return new Promise((resolvePromise, reject) => {
        execFile(bin, ['-e', server.admin, '-k', key, ...args], { timeout: 20000 }, (err, stdout, stderr) => {
            if (err) return reject(new Error(`zimctl ${args.join(' ')} failed (${err.code ?? err.signal}): ${stdout}${stderr}`));
            try {
                resolvePromise(JSON.parse(stdout));
            } catch {
                resolvePromise(stdout);
            }
        });
    });
}

/** ZimClient options for user `uid` on a server from startServer: a token
    signed with its demo app's secret, quick reconnects; opts on top. */
export function clientOptions(server, uid, opts = {}) {
    return { token: signToken(server.secret, 'demo', uid, 600), minReconnectDelay: 100, maxReconnectDelay: 800, ...opts };
}
