// The official OpenAI SDK for JavaScript against warden.
//
//   node openai.mjs chat    models.list, a chat completion, a streamed one
//   node openai.mjs retry   one chat completion expected to fail, with the
//                           SDK's default retries (maxRetries 2): how many
//                           attempts it made and what the last answer said
//
// CLIENT_AUTH=bearer passes the secret as apiKey (Authorization: Bearer);
// CLIENT_AUTH=basic passes a dummy apiKey and Authorization: Basic in
// defaultHeaders, which the SDK puts after its own auth header, so Basic is
// what is sent. CLIENT_MODEL names the model (slowness, see llm_server.py).
import OpenAI from 'openai';
import { auth, baseURL, basicValue, emit, recordingFetch, secret, step, describeError, versionOf } from './common.mjs';

const requests = [];
const options = { baseURL: `${baseURL}/v1`, fetch: recordingFetch(requests), timeout: 30_000 };
if (auth === 'bearer') {
  options.apiKey = secret;
} else if (auth === 'basic') {
  options.apiKey = 'unused-with-basic';
  options.defaultHeaders = { Authorization: basicValue() };
} else {
  throw new Error(`openai.mjs: CLIENT_AUTH ${auth} not supported`);
}
const client = new OpenAI(options);
const model = process.env.CLIENT_MODEL || 'e2e-model';
const messages = [{ role: 'user', content: 'say hello to warden' }];
const scenario = process.argv[2] || 'chat';

if (scenario === 'chat') {
  const models = await step(async () => {
    const ids = [];
    for await (const m of client.models.list()) {
      ids.push(m.id);
    }
    return ids;
  });
  const nonstream = await step(async () => {
    const c = await client.chat.completions.create({ model, messages });
    return { id: c.id, object: c.object, content: c.choices[0].message.content, finish_reason: c.choices[0].finish_reason, usage: c.usage };
  });
  const stream = await step(async () => {
    const s = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
    let content = '';
    let chunks = 0;
    let finish = null;
    let usage = null;
    for await (const chunk of s) {
      chunks++;
      if (chunk.choices.length > 0) {
        content += chunk.choices[0].delta?.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      usage = chunk.usage ?? usage;
    }
    return { content, chunks, finish_reason: finish, usage };
  });
  emit({ client: 'openai', version: versionOf('openai'), auth, models, nonstream, stream, requests });
} else if (scenario === 'retry') {
  const start = Date.now();
  let result;
  try {
    const c = await client.chat.completions.create({ model, messages });
    result = { ok: true, content: c.choices[0].message.content };
  } catch (err) {
    result = { ok: false, error: describeError(err) };
  }
  emit({ client: 'openai', scenario, auth, ...result, attempts: requests.length, elapsed_ms: Date.now() - start, requests });
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
