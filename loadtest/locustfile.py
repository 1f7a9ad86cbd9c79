"""Locust users for `timerlab load`: people in conversations with the pods.

Runs only inside Locust's own process (`python -m locust -f loadtest/locustfile.py ...`), never
imported by pytest or by `store/`: locust monkey-patches the process with gevent on import.
No module here may import requests or urllib3 before locust does (that crashes it).

Environment (set by `loadtest.run`):
- `TIMERLAB_PODS`: comma-separated base URLs of the pods;
- `TIMERLAB_SHAPE`: steady | ramp | spike | soak (see `loadtest.shapes`);
- `TIMERLAB_END_PROBABILITY`: how often a finished conversation is ended explicitly (a cancel)
  rather than abandoned (its timer then fires once the session timeout has passed).

A user talks in one conversation at a time: a few messages, one every 1 to 5 s of think time,
then it ends or abandons the conversation and starts a new one, with a new id. Ids are never
reused, so any fire followed by another message of its conversation fired while the user was
still talking. The session timeout (8 s) is above the longest think time: no timer comes due
while its user talks.

Routing is sticky per conversation (a hash of its id picks the pod), as with a sticky-session
load balancer; when a pod does not answer, or answers 503 because it is cut off from Redis
(degraded), the request goes to the next pod and the conversation stays there. Only if every
pod is degraded (a full outage) is the write sent with `X-Allow-Degraded: 1`, and parked in the
pod's fallback memory. So in a partial outage no conversation's timer is kept where the other
pods cannot see it.
"""

from __future__ import annotations

import os
import random
import uuid
import zlib
from typing import Any

from locust import FastHttpUser, between, task

from loadtest import shapes
from loadtest.scenarios import ALLOW_DEGRADED, REROUTED, THINK_TIME

PODS = [url.rstrip("/") for url in os.environ.get("TIMERLAB_PODS", "").split(",") if url]
END_PROBABILITY = float(os.environ.get("TIMERLAB_END_PROBABILITY", "0.5"))
MESSAGES = (2, 8)
"""Messages per conversation (inclusive range)."""

LoadShape = shapes.pick(os.environ.get("TIMERLAB_SHAPE", "steady"))


class ConversationUser(FastHttpUser):
    wait_time = between(*THINK_TIME)
    network_timeout = 10.0
    connection_timeout = 2.0

    def on_start(self) -> None:
        if not PODS:
            raise RuntimeError("TIMERLAB_PODS is empty: no pod to talk to")
        self._new_conversation()

    def _new_conversation(self) -> None:
        self.conversation = f"c-{uuid.uuid4().hex[:20]}"
        self.session = f"s-{uuid.uuid4().hex[:8]}"
        self.remaining = random.randint(*MESSAGES)
        self.home = zlib.crc32(self.conversation.encode()) % len(PODS)

    @task
    def talk(self) -> None:
        if self.remaining <= 0:
            if random.random() < END_PROBABILITY:
                self._post("end", {})
            self._new_conversation()
        self._post("messages", {"session_id": self.session})
        self.remaining -= 1

    def _post(self, action: str, body: dict[str, Any]) -> None:
        """POST to the conversation's pod; when it cannot take the write (down, or degraded:
        cut off from Redis), to the next pod, which then keeps the conversation. Only when no
        pod can reach Redis is the write sent again with `X-Allow-Degraded`, so the home pod
        keeps it in its fallback memory: like a load balancer that drains degraded pods while
        a healthy one is left."""
        path = f"/conversations/{self.conversation}/{action}"
        for attempt in range(len(PODS)):
            index = (self.home + attempt) % len(PODS)
            if self._send(PODS[index] + path, action, body, {}, final=False):
                self.home = index
                return
        self._send(PODS[self.home] + path, action, body, {ALLOW_DEGRADED: "1"}, final=True)

    def _send(
        self, url: str, action: str, body: dict[str, Any], headers: dict[str, str], *, final: bool
    ) -> bool:
        """One attempt. A failed attempt that the balancer retries elsewhere is reported under
        its own name, `... (rerouted)`, so the user-visible failures stay countable."""
        name = f"/conversations/[id]/{action}"
        with self.client.post(
            url, json=body, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code == 200:
                response.success()
                return True
            if not final:
                response.request_meta["name"] = f"{name} {REROUTED}"
            response.failure(f"{url}: {response.status_code} {response.error}")
            return False
