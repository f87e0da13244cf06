// LangChain.js's ChatOpenAI against warden: invoke and stream. It sends its
// apiKey as Authorization: Bearer (through the openai SDK), so warden needs
// the bearer scheme (WARDEN_AUTH_SCHEMES).
import { ChatOpenAI } from '@langchain/openai';
import { baseURL, emit, recordingFetch, secret, step, versionOf } from './common.mjs';

const requests = [];
const chat = new ChatOpenAI({
  model: process.env.CLIENT_MODEL || 'e2e-model',
  apiKey: secret,
  maxRetries: 0,
  configuration: { baseURL: `${baseURL}/v1`, fetch: recordingFetch(requests) },
});
const prompt = [{ role: 'user', content: 'say hello to warden' }];

const nonstream = await step(async () => {
  const m = await chat.invoke(prompt);
  return { content: m.content, usage: m.usage_metadata ?? null };
});
const stream = await step(async () => {
  let content = '';
  let chunks = 0;
  for await (const c of await chat.stream(prompt)) {
    chunks++;
    content += typeof c.content === 'string' ? c.content : '';
  }
  return { content, chunks };
});
emit({ client: 'langchain', version: versionOf('@langchain/openai'), nonstream, stream, requests });
