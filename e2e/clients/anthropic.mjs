// The official Anthropic SDK for JavaScript against warden: a message and a
// streamed one.
//
//   node anthropic.mjs [sdk] [carrier]
//
// sdk: "1" is @anthropic-ai/sdk (1.x), which sends apiKey as
// Authorization: Bearer; "0" is anthropic-sdk-0 (@anthropic-ai/sdk 0.137.0,
// the last 0.x), which sends apiKey as x-api-key.
// carrier: "apikey" passes the secret as apiKey; "header" passes it in
// defaultHeaders as X-Api-Key, with no apiKey (for a 1.x client that must
// use x-api-key).
import Anthropic1 from '@anthropic-ai/sdk';
import Anthropic0 from 'anthropic-sdk-0';
import { baseURL, emit, recordingFetch, secret, step, versionOf } from './common.mjs';

const sdk = process.argv[2] || '1';
const carrier = process.argv[3] || 'apikey';
const Anthropic = sdk === '0' ? Anthropic0 : Anthropic1;
const requests = [];
// Both read ANTHROPIC_* variables when an option is missing; the Go test
// runs this with none set.
const options = { baseURL, fetch: recordingFetch(requests), timeout: 30_000 };
if (carrier === 'apikey') {
  options.apiKey = secret;
} else if (carrier === 'header') {
  options.defaultHeaders = { 'X-Api-Key': secret };
} else {
  throw new Error(`unknown carrier ${carrier}`);
}
const client = new Anthropic(options);
const model = process.env.CLIENT_MODEL || 'e2e-model';
const messages = [{ role: 'user', content: 'say hello to warden' }];

const nonstream = await step(async () => {
  const m = await client.messages.create({ model, max_tokens: 64, messages });
  return { id: m.id, type: m.type, content: m.content.map((b) => b.text).join(''), stop_reason: m.stop_reason, usage: m.usage };
});
const stream = await step(async () => {
  const s = await client.messages.create({ model, max_tokens: 64, messages, stream: true });
  const events = [];
  let content = '';
  let stop = null;
  for await (const e of s) {
    events.push(e.type);
    if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') {
      content += e.delta.text;
    }
    if (e.type === 'message_delta') {
      stop = e.delta.stop_reason;
    }
  }
  return { content, events, stop_reason: stop };
});
// The SDK's own accumulation of a stream into the final message.
const accumulated = await step(async () => {
  const m = await client.messages.stream({ model, max_tokens: 64, messages }).finalMessage();
  return { content: m.content.map((b) => b.text).join(''), stop_reason: m.stop_reason, usage: m.usage };
});

emit({
  client: 'anthropic',
  version: versionOf(sdk === '0' ? 'anthropic-sdk-0' : '@anthropic-ai/sdk'),
  carrier,
  nonstream,
  stream,
  accumulated,
  requests,
});
