/*  zim-client/node — helpers for app backends on Node: sign the JWT HS256
    tokens zim accepts (docs/PROTOCOL.md, "Connecting and authenticating"). */

import { createHmac } from 'node:crypto';

function b64url(data: string | Buffer): string {
    return Buffer.from(data).toString('base64url');
}

/** Signs a token for user `uid` of app `app`, valid for `ttl` seconds
    (default 3600), with the app's secret (the server's `apps/NAME/secret`,
    or the one line of DATADIR/app-demo.secret). */
export function signToken(secret: string, app: string, uid: string, ttl = 3600): string {
    const iat = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const claims = b64url(JSON.stringify({ sub: uid, app, exp: iat + ttl, iat }));
    const sig = createHmac('sha256', secret).update(`${header}.${claims}`).digest('base64url');
    return `${header}.${claims}.${sig}`;
}
