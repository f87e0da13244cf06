// Hugging Face's @huggingface/inference against warden: an InferenceClient
// with warden as its endpoint URL, chatCompletion and chatCompletionStream.
// The token goes as Authorization: Bearer (a token not starting with "hf_"
// counts as a provider key, sent the same way), so warden needs the bearer
// scheme. With an endpoint URL the client posts to <url>/v1/chat/completions.
import { InferenceClient } from '@huggingface/inference';
import { baseURL, emit, recordingFetch, secret, step, versionOf } from './common.mjs';

const requests = [];
const client = new InferenceClient(secret, { fetch: recordingFetch(requests) }).endpoint(baseURL);
const args = {
  model: process.env.CLIENT_MODEL || 'e2e-model',
  messages: [{ role: 'user', content: 'say hello to warden' }],
  max_tokens: 64,
};

const nonstream = await step(async () => {
  const c = await client.chatCompletion(args);
  return { content: c.choices[0].message.content, finish_reason: c.choices[0].finish_reason };
});
const stream = await step(async () => {
  let content = '';
  let chunks = 0;
  for await (const c of client.chatCompletionStream(args)) {
    chunks++;
    if (c.choices && c.choices.length > 0) {
      content += c.choices[0].delta?.content ?? '';
    }
  }
  return { content, chunks };
});
emit({ client: 'huggingface', version: versionOf('@huggingface/inference'), nonstream, stream, requests });
