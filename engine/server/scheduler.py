"""A fair queue: round-robin between clients, first-come within one client.

A batch job that queues 50 photos must not make GIMP wait behind all of them:
each client (owner) gets one turn in rotation, so a new request waits for at
most one request from each other client.
"""

import threading
from collections import OrderedDict, deque


class FairQueue:
    def __init__(self):
        self._cond = threading.Condition()
        self._queues = OrderedDict()   # owner -> deque of items; the first owner has the next turn
        self._closed = False

    def put(self, owner, item):
        with self._cond:
            self._queues.setdefault(owner, deque()).append(item)
            self._cond.notify()

    def get(self, timeout=None):
        """The next item in rotation, or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._queues or self._closed, timeout):
                return None
            if self._closed:
                return None
            owner, items = next(iter(self._queues.items()))
            item = items.popleft()
            if items:
                self._queues.move_to_end(owner)
            else:
                del self._queues[owner]
            return item

    def remove(self, owner, predicate=lambda item: True):
        """Take out the owner's items that match; returns them."""
        with self._cond:
            items = self._queues.get(owner)
            if not items:
                return []
            taken = [i for i in items if predicate(i)]
            kept = deque(i for i in items if not predicate(i))
            if kept:
                self._queues[owner] = kept
            else:
                del self._queues[owner]
            return taken

    def order(self):
        """Items in the order they will run (for "N ahead" messages)."""
        with self._cond:
            lanes = [list(q) for q in self._queues.values()]
        out = []
        for turn in range(max((len(l) for l in lanes), default=0)):
            out.extend(l[turn] for l in lanes if turn < len(l))
        return out

    def count(self, owner=None):
        with self._cond:
            if owner is not None:
                return len(self._queues.get(owner, ()))
            return sum(len(q) for q in self._queues.values())

    def close(self):
        """Wake the worker for good; returns what was still queued."""
        with self._cond:
            self._closed = True
            left = [i for q in self._queues.values() for i in q]
            self._queues.clear()
            self._cond.notify_all()
            return left
