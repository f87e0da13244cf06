// Shared by the client scripts of warden's end-to-end tests
// (e2e/clients_test.go): the settings they read from the environment, the
// credential headers, a fetch that notes what each request carried, and the
// one JSON line each script prints for the Go test.
//
//   WARDEN_URL     warden's base URL, http://127.0.0.1:PORT (required)
//   CLIENT_AUTH    basic | bearer | x-api-key (default basic)
//   CLIENT_USER    the Basic user name (default paperspace)
//   CLIENT_SECRET  the secret (required)

import { readFileSync } from 'node:fs';

export const baseURL = required('WARDEN_URL').replace(/\/+$/, '');
export const auth = process.env.CLIENT_AUTH || 'basic';
export const user = process.env.CLIENT_USER || 'paperspace';
export const secret = required('CLIENT_SECRET');

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

// basicValue is the Authorization value of HTTP Basic: the UTF-8 bytes of
// user:secret in base64 (RFC 7617 with charset="UTF-8", what warden asks for).
export function basicValue(u = user, s = secret) {
  return 'Basic ' + Buffer.from(`${u}:${s}`, 'utf8').toString('base64');
}

// credentialHeaders is the header that carries the secret for kind.
export function credentialHeaders(kind = auth) {
  switch (kind) {
    case 'basic':
      return { Authorization: basicValue() };
    case 'bearer':
      return { Authorization: `Bearer ${secret}` };
    case 'x-api-key':
      return { 'x-api-key': secret };
    default:
      throw new Error(`unknown CLIENT_AUTH ${kind}`);
  }
}

// describeCredentials says what a request carried, without the secret: the
// Authorization scheme and whether its credential is the right one, and
// whether x-api-key was the secret.
export function describeCredentials(headers) {
  const h = new Headers(headers);
  const a = h.get('authorization');
  const k = h.get('x-api-key');
  const out = { authorization: null, x_api_key: null };
  if (a !== null) {
    const [scheme, ...rest] = a.split(' ');
    const value = rest.join(' ');
    let right = false;
    if (scheme.toLowerCase() === 'basic') {
      right = a === basicValue();
    } else if (scheme.toLowerCase() === 'bearer') {
      right = value === secret;
    }
    out.authorization = { scheme, right };
  }
  if (k !== null) {
    out.x_api_key = { right: k === secret };
  }
  return out;
}

// recordingFetch is a fetch for an SDK's `fetch` option: it notes, per
// request, the method, the path, the credentials it carried, the SDK's retry
// count header, and the status and warden's headers of the answer.
export function recordingFetch(log) {
  return async (url, init = {}) => {
    const headers = new Headers(init.headers);
    const entry = {
      method: init.method || 'GET',
      path: new URL(String(url)).pathname,
      sent: describeCredentials(headers),
      retry_count: headers.get('x-stainless-retry-count'),
    };
    log.push(entry);
    const resp = await fetch(url, init);
    entry.status = resp.status;
    entry.answer = pickHeaders(resp.headers);
    return resp;
  };
}

// pickHeaders keeps the headers the tests look at.
export function pickHeaders(headers) {
  const out = {};
  for (const name of ['x-warden-error', 'x-should-retry', 'retry-after', 'retry-after-ms', 'www-authenticate', 'content-type']) {
    const v = headers?.get?.(name) ?? headers?.[name];
    if (v !== undefined && v !== null) {
      out[name] = v;
    }
  }
  return out;
}

// describeError turns an SDK error into JSON.
export function describeError(err) {
  return {
    name: err?.constructor?.name ?? typeof err,
    message: String(err?.message ?? err),
    status: err?.status ?? null,
    headers: pickHeaders(err?.headers),
  };
}

// emit prints the result line; exit code 0 means the script ran, the result
// says how the exchanges went.
export function emit(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

// step runs one exchange and returns {ok, value} or {ok: false, error}.
export async function step(f) {
  try {
    return { ok: true, value: await f() };
  } catch (err) {
    return { ok: false, error: describeError(err) };
  }
}

// versionOf is the installed version of a package (from the lock file's
// install in node_modules).
export function versionOf(pkg) {
  const url = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}
