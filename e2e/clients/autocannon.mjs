// autocannon against warden: a few seconds of GET requests at modest
// concurrency, with the credential header of CLIENT_AUTH.
//
//   node autocannon.mjs [path] [connections] [seconds]
import autocannon from 'autocannon';
import { baseURL, credentialHeaders, emit, versionOf } from './common.mjs';

const path = process.argv[2] || '/v1/models';
const connections = Number(process.argv[3] || 8);
const duration = Number(process.argv[4] || 3);
const r = await autocannon({
  url: `${baseURL}${path}`,
  connections,
  duration,
  headers: credentialHeaders(),
  timeout: 10,
});
emit({
  client: 'autocannon',
  version: versionOf('autocannon'),
  path,
  connections,
  duration,
  requests: r.requests.total,
  rps: r.requests.average,
  latency_p99_ms: r.latency.p99,
  status_2xx: r['2xx'],
  non2xx: r.non2xx,
  status_codes: r.statusCodeStats ?? null,
  errors: r.errors,
  timeouts: r.timeouts,
  resets: r.resets ?? 0,
});
