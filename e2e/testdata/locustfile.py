"""Locust users for warden's client end-to-end tests (e2e/clients_test.go),
on Debian's python3-locust:

  python3 -m locust -f locustfile.py --headless -u 5 -r 5 -t 3s \\
      --host http://127.0.0.1:8080 --csv out/locust

Every user sends the credential header in E2E_AUTH_HEADER ("Name: value",
e.g. "Authorization: Bearer <secret>") on every request, and without pause
lists the models (three times in four) or asks for a chat completion (llm_server.py's
reply is the prompt's words). Anything but a 200 with the right body is a
failure.
"""

import os

from locust import HttpUser, constant, task

PROMPT = "say hello to warden"


class ModelUser(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        name, _, value = os.environ["E2E_AUTH_HEADER"].partition(":")
        self.client.headers[name.strip()] = value.strip()

    @task(3)
    def models(self):
        with self.client.get("/v1/models", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code} {r.headers.get('X-Warden-Error', '')}")
            elif r.json()["data"][0]["id"] != "e2e-model":
                r.failure(f"unexpected body {r.text[:200]}")

    @task(1)
    def chat(self):
        body = {"model": "e2e-model", "messages": [{"role": "user", "content": PROMPT}]}
        with self.client.post("/v1/chat/completions", json=body, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code} {r.headers.get('X-Warden-Error', '')}")
            elif r.json()["choices"][0]["message"]["content"] != PROMPT:
                r.failure(f"unexpected body {r.text[:200]}")
