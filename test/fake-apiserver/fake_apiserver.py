#!/usr/bin/env python3
"""A fake kube-apiserver for colo's tests: the core/v1 pods and events a node agent uses, and the
Services and discovery.k8s.io/v1 EndpointSlices it resolves names with, spoken the way
kube-apiserver speaks them on the wire.

- HTTPS (or HTTP), bearer tokens (401 Status otherwise) or a client certificate signed by --client-ca.
- GET /api/v1/pods and /api/v1/namespaces/NS/pods: fieldSelector (spec.nodeName, metadata.name,
  metadata.namespace; = and ==), labelSelector (k=v), limit + continue over a snapshot, with 410
  when a continue token has expired; PodList with metadata.resourceVersion.
- ?watch=1: chunked transfer, one JSON event per line, ADDED/MODIFIED/DELETED from history after
  resourceVersion, BOOKMARK events with allowWatchBookmarks, timeoutSeconds, 410 Expired for a
  compacted resourceVersion as an ERROR event (or, if asked, as the HTTP status). Events are
  written in randomly cut chunks, so clients meet events split across chunks.
- GET /api/v1/namespaces/NS/pods/NAME, PATCH it (application/merge-patch+json, metadata.labels and
  metadata.annotations: what a pre-delete hook does), POST /api/v1/namespaces/NS/events, GET events
  (fieldSelector reason=, involvedObject.name=, involvedObject.uid=).
- Services (/api/v1[/namespaces/NS]/services) and EndpointSlices
  (/apis/discovery.k8s.io/v1[/namespaces/NS]/endpointslices): list and watch as for pods (one
  resourceVersion sequence and history for all kinds, as etcd has), not persisted by --state.
- Discovery (/api, /api/v1, /apis, /version) and Table output, so kubectl can talk to it.
- /fake/... (no auth): create, annotate and delete pods (and services, endpointslices), compact history, rotate tokens, inject
  faults (slow responses, dropped or silent watches, 410s, the whole API down), read stats.
  Faults: {"watchEnd": "drop"|"expire"} ends every open watch that way (half an event then a dead
  connection; an ERROR 410 event); {"silent": true} makes every watch, open or new, say nothing
  until cleared; {"watch410Http": N} answers the next N too-old watches with HTTP 410 instead of
  an ERROR event; {"expireContinue": true} expires the next continue token (a number: after that
  many ms); {"slowMs": N} delays
  every API request; {"down": true} drops every API connection unanswered; {"forbidden": true}
  answers every API request 403 (the caller's RBAC deleted). DELETE /fake/daemonsets/NS/NAME?rbac=1
  deletes the DaemonSet and, in the same instant, its RBAC (every later request 403), as
  `helm uninstall` does.
"""
import argparse
import base64
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Store:
    def __init__(self, state_file):
        self.lock = threading.Condition()
        self.rv = 1000
        self.pods = {}          # (ns, name) -> pod object
        self.objects = {"pods": self.pods, "services": {}, "endpointslices": {}}  # by kind (plural)
        self.history = []       # (rv, type, object, kind) for watches
        self.compacted = 0      # watches from a resourceVersion below this get 410
        self.snapshots = {}     # continue id -> (rv, items, created)
        self.events = []        # posted core/v1 Events
        self.daemonsets = {}    # (ns, name) -> apps/v1 DaemonSet (only what colo-node GETs)
        self.tokens = set()
        self.faults = {}
        self.stats = {"lists": 0, "watches": 0, "gets": 0, "unauthorized": 0, "events": 0, "requests": 0}
        self.generation = 0     # bumped to end every open watch (drop, silence, expire)
        self.state_file = state_file
        if state_file and os.path.exists(state_file):
            with open(state_file) as f:
                st = json.load(f)
            self.rv = st["rv"]
            for p in st["pods"]:
                self.pods[(p["metadata"]["namespace"], p["metadata"]["name"])] = p
            # A restarted apiserver has no watch history: older resourceVersions are expired.
            self.compacted = self.rv + 1

    def save(self):
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"rv": self.rv, "pods": list(self.pods.values())}, f)
        os.replace(tmp, self.state_file)

    def _bump(self, typ, obj, kind="pods"):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, typ, json.loads(json.dumps(obj)), kind))
        if len(self.history) > 100000:
            self.history = self.history[-50000:]
            self.compacted = self.history[0][0]
        self.lock.notify_all()

    def upsert(self, pod, save=True):
        with self.lock:
            md = pod.setdefault("metadata", {})
            md.setdefault("namespace", "default")
            key = (md["namespace"], md["name"])
            old = self.pods.get(key)
            pod.setdefault("apiVersion", "v1")
            pod.setdefault("kind", "Pod")
            if old:
                md["uid"] = old["metadata"]["uid"]
                md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            else:
                md.setdefault("uid", str(uuid.uuid4()))
                md["creationTimestamp"] = now_rfc3339()
            pod.setdefault("spec", {}).setdefault("containers", [{"name": "app", "image": "busybox"}])
            pod.setdefault("status", {}).setdefault("phase", "Running")
            self.pods[key] = pod
            self._bump("MODIFIED" if old else "ADDED", pod)
            if save:
                self.save()
            return pod

    def annotate(self, ns, name, changes, labels=None):
        with self.lock:
            pod = self.pods.get((ns, name))
            if pod is None:
                return None
            for field, delta in (("annotations", changes), ("labels", labels or {})):
                cur = pod["metadata"].setdefault(field, {})
                for k, v in delta.items():
                    if v is None:
                        cur.pop(k, None)
                    else:
                        cur[k] = v
            self._bump("MODIFIED", pod)
            self.save()
            return pod

    def delete(self, ns, name):
        with self.lock:
            pod = self.pods.pop((ns, name), None)
            if pod is None:
                return None
            self._bump("DELETED", pod)
            self.save()
            return pod

    KINDS = {"services": ("v1", "Service"), "endpointslices": ("discovery.k8s.io/v1", "EndpointSlice")}

    def upsert_object(self, kind, obj):
        """A Service or an EndpointSlice, as given (namespace default), with uid and versions."""
        with self.lock:
            md = obj.setdefault("metadata", {})
            md.setdefault("namespace", "default")
            key = (md["namespace"], md["name"])
            old = self.objects[kind].get(key)
            obj["apiVersion"], obj["kind"] = self.KINDS[kind]
            md["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            md["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else now_rfc3339()
            self.objects[kind][key] = obj
            self._bump("MODIFIED" if old else "ADDED", obj, kind)
            return obj

    def delete_object(self, kind, ns, name):
        with self.lock:
            obj = self.objects[kind].pop((ns, name), None)
            if obj is not None:
                self._bump("DELETED", obj, kind)
            return obj


def parse_bool(text):
    """As Go's strconv.ParseBool, which kube-apiserver uses for query parameters."""
    return text in ("1", "t", "T", "TRUE", "true", "True")


def parse_field_selector(text):
    """Returns a list of (path, value, equal) or raises ValueError for what kube-apiserver refuses."""
    out = []
    if not text:
        return out
    for term in text.split(","):
        m = re.fullmatch(r"([a-zA-Z.]+)(==|=|!=)(.*)", term)
        if not m:
            raise ValueError("invalid field selector term %r" % term)
        path, op, value = m.groups()
        if path not in ("spec.nodeName", "metadata.name", "metadata.namespace", "status.phase", "spec.serviceAccountName"):
            raise ValueError('field label not supported: %s' % path)
        out.append((path, value, op != "!="))
    return out


def field_of(pod, path):
    cur = pod
    for part in path.split("."):
        cur = cur.get(part, {}) if isinstance(cur, dict) else {}
    return cur if isinstance(cur, str) else ""


def matches(pod, ns, fields, labels):
    if ns and pod["metadata"]["namespace"] != ns:
        return False
    for path, value, equal in fields:
        if (field_of(pod, path) == value) != equal:
            return False
    pl = pod["metadata"].get("labels", {})
    return all(pl.get(k) == v for k, v in labels)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def setup(self):
        ctx = self.server.tls
        if ctx is not None:
            self.request.settimeout(10)
            try:
                self.request = ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake-apiserver: " + (fmt % args) + "\n")

    # ---- plumbing ----
    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null") if n else None

    def authorized(self):
        store = self.server.store
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in store.tokens:
            return True
        if self.server.tls is not None and self.request.getpeercert():
            return True
        with store.lock:
            store.stats["unauthorized"] += 1
        self.send_json(401, status_obj(401, "Unauthorized", "Unauthorized"))
        return False

    def api_gate(self):
        """Faults that apply to every API request; False when the request was answered (or dropped)."""
        store = self.server.store
        with store.lock:
            store.stats["requests"] += 1
            down = store.faults.get("down")
            slow = store.faults.get("slowMs", 0)
        if down:  # the API is gone: the connection dies without an answer
            self.close_connection = True
            try:
                self.request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        if slow:
            time.sleep(slow / 1000.0)
        if not self.authorized():
            return False
        with store.lock:
            forbidden = store.faults.get("forbidden")
        if forbidden:
            self.send_json(403, status_obj(403, "Forbidden", 'User "system:serviceaccount:kube-system:colo" cannot perform this action: RBAC: role not found'))
            return False
        return True

    # ---- verbs ----
    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        path = u.path.rstrip("/") or "/"
        if path.startswith("/fake/"):
            return self.fake_get(path)
        if not self.api_gate():
            return
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "platform": "linux/amd64"})
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            gv = {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "discovery.k8s.io", "versions": [gv], "preferredVersion": gv}]})
        if path == "/apis/discovery.k8s.io/v1":
            return self.send_json(200, {"kind": "APIResourceList", "groupVersion": "discovery.k8s.io/v1", "resources": [
                {"name": "endpointslices", "singularName": "endpointslice", "namespaced": True, "kind": "EndpointSlice",
                 "verbs": ["get", "list", "watch"]}]})
        if path == "/api/v1":
            return self.send_json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
                 "verbs": ["get", "list", "watch"]},
                {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event", "shortNames": ["ev"],
                 "verbs": ["create", "get", "list"]},
                {"name": "services", "singularName": "service", "namespaced": True, "kind": "Service", "shortNames": ["svc"],
                 "verbs": ["get", "list", "watch"]}]})
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/pods", path)
        if m:
            if parse_bool(q.get("watch", "")):
                return self.watch(m.group(1), q)
            return self.list_pods(m.group(1), q)
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/(services)|/apis/discovery\.k8s\.io/v1(?:/namespaces/([^/]+))?/(endpointslices)", path)
        if m:
            ns, kind = (m.group(1), m.group(2)) if m.group(2) else (m.group(3), m.group(4))
            if parse_bool(q.get("watch", "")):
                return self.watch(ns, q, kind)
            return self.list_pods(ns, q, kind)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", path)
        if m:
            store = self.server.store
            with store.lock:
                store.stats["gets"] += 1
                pod = store.pods.get((m.group(1), m.group(2)))
                pod = json.loads(json.dumps(pod)) if pod else None
            if pod is None:
                return self.send_json(404, status_obj(404, "NotFound", 'pods "%s" not found' % m.group(2)))
            return self.send_json(200, pod)
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/daemonsets/([^/]+)", path)
        if m:
            with self.server.store.lock:
                ds = self.server.store.daemonsets.get((m.group(1), m.group(2)))
            if ds is None:
                return self.send_json(404, status_obj(404, "NotFound", 'daemonsets.apps "%s" not found' % m.group(2)))
            return self.send_json(200, ds)
        m = re.fullmatch(r"/api/v1(?:/namespaces/([^/]+))?/events", path)
        if m:
            terms = []
            for term in [t for t in q.get("fieldSelector", "").split(",") if t]:
                k, _, v = term.partition("=")
                if k not in ("reason", "involvedObject.name", "involvedObject.uid", "type"):
                    return self.send_json(400, status_obj(400, "BadRequest", '"%s" is not a known field selector' % k))
                terms.append((k, v.lstrip("=")))

            def ev_field(e, k):
                return e.get("involvedObject", {}).get(k.split(".", 1)[1], "") if k.startswith("involvedObject.") else e.get(k, "")
            with self.server.store.lock:
                items = [e for e in self.server.store.events if (not m.group(1) or e["metadata"]["namespace"] == m.group(1))
                         and all(ev_field(e, k) == v for k, v in terms)]
            return self.send_json(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.server.store.rv)}, "items": items})
        self.send_json(404, status_obj(404, "NotFound", "the server could not find the requested resource"))

    def do_POST(self):
        path = urlparse(self.path).path
        if path.startswith("/fake/"):
            return self.fake_post(path)
        if not self.api_gate():
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", path)
        if not m:
            return self.send_json(405, status_obj(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"))
        try:
            ev = self.read_body()
        except ValueError:
            return self.send_json(400, status_obj(400, "BadRequest", "the body is not JSON"))
        if not isinstance(ev, dict) or ev.get("kind") != "Event" or "involvedObject" not in ev or not ev.get("metadata", {}).get("name"):
            return self.send_json(422, status_obj(422, "Invalid", "Event is invalid: involvedObject and metadata.name are required"))
        if ev["metadata"].get("namespace", m.group(1)) != m.group(1):
            return self.send_json(400, status_obj(400, "BadRequest", "the namespace of the object does not match the namespace on the request"))
        store = self.server.store
        with store.lock:
            store.rv += 1
            ev["metadata"].update({"namespace": m.group(1), "uid": str(uuid.uuid4()), "resourceVersion": str(store.rv),
                                   "creationTimestamp": now_rfc3339()})
            store.events.append(ev)
            store.stats["events"] += 1
        self.send_json(201, ev)

    def do_DELETE(self):
        u = urlparse(self.path)
        path = u.path
        m = re.fullmatch(r"/fake/daemonsets/([^/]+)/([^/]+)", path)
        if m:
            with self.server.store.lock:
                ds = self.server.store.daemonsets.pop((m.group(1), m.group(2)), None)
                if parse_bool(parse_qs(u.query).get("rbac", [""])[-1]):
                    self.server.store.faults["forbidden"] = True
            return self.send_json(200 if ds else 404, ds or status_obj(404, "NotFound", "no such daemonset"))
        m = re.fullmatch(r"/fake/(services|endpointslices)/([^/]+)/([^/]+)", path)
        if m:
            obj = self.server.store.delete_object(m.group(1), m.group(2), m.group(3))
            return self.send_json(200 if obj else 404, obj or status_obj(404, "NotFound", "no such object"))
        m = re.fullmatch(r"/fake/pods/([^/]+)/([^/]+)", path)
        if not m:
            return self.send_json(404, status_obj(404, "NotFound", "not found"))
        pod = self.server.store.delete(m.group(1), m.group(2))
        self.send_json(200 if pod else 404, pod or status_obj(404, "NotFound", "no such pod"))

    def do_PATCH(self):
        path = urlparse(self.path).path
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", path)
        if m:
            if not self.api_gate():
                return
            if self.headers.get("Content-Type", "").split(";")[0] != "application/merge-patch+json":
                return self.send_json(415, status_obj(415, "UnsupportedMediaType", "the body of the request was in an unknown format"))
            try:
                body = self.read_body()
            except ValueError:
                return self.send_json(400, status_obj(400, "BadRequest", "the body is not JSON"))
            md = (body or {}).get("metadata", {}) if isinstance(body, dict) else {}
            if not isinstance(body, dict) or set(body) - {"metadata"} or set(md) - {"annotations", "labels"}:
                return self.send_json(422, status_obj(422, "Invalid", "the fake patches only metadata.annotations and metadata.labels"))
            pod = self.server.store.annotate(m.group(1), m.group(2), md.get("annotations") or {}, md.get("labels") or {})
            if pod is None:
                return self.send_json(404, status_obj(404, "NotFound", 'pods "%s" not found' % m.group(2)))
            return self.send_json(200, pod)
        m = re.fullmatch(r"/fake/pods/([^/]+)/([^/]+)/annotations", path)
        if not m:
            return self.send_json(405, status_obj(405, "MethodNotAllowed", "only /fake/pods/NS/NAME/annotations is patchable"))
        pod = self.server.store.annotate(m.group(1), m.group(2), self.read_body() or {})
        self.send_json(200 if pod else 404, pod or status_obj(404, "NotFound", "no such pod"))

    def selectors(self, q):
        """(fieldSelector terms, labelSelector pairs), or None after answering 400 for a bad one."""
        try:
            fields = parse_field_selector(q.get("fieldSelector", ""))
        except ValueError as e:
            self.send_json(400, status_obj(400, "BadRequest", str(e)))
            return None
        return fields, [tuple(t.split("=", 1)) for t in q.get("labelSelector", "").split(",") if "=" in t]

    # ---- list ----
    def list_pods(self, ns, q, kind="pods"):
        store = self.server.store
        sel = self.selectors(q)
        if sel is None:
            return
        fields, labels = sel
        limit = int(q.get("limit") or 0)
        cont = q.get("continue", "")
        fault = False
        with store.lock:
            store.stats["lists"] += 1
            if cont:
                try:
                    snap_id, start = json.loads(base64.urlsafe_b64decode(cont.encode()))
                except (ValueError, TypeError):
                    return self.send_json(400, status_obj(400, "BadRequest", "invalid continue token"))
                snap = store.snapshots.get(snap_id)
                fault = store.faults.pop("expireContinue", False)
                expired = snap is None or bool(fault)
                if expired:
                    store.snapshots.pop(snap_id, None)
                else:
                    rv, items = snap[0], snap[1]
            else:
                expired = False
                rv = store.rv
                items = [json.loads(json.dumps(p)) for k, p in sorted(store.objects[kind].items()) if matches(p, ns, fields, labels)]
                start = 0
                snap_id = None
            if not expired:
                page = items[start:start + limit] if limit else items[start:]
                meta = {"resourceVersion": str(rv)}
                if limit and start + limit < len(items):
                    if snap_id is None:
                        snap_id = uuid.uuid4().hex
                        store.snapshots[snap_id] = (rv, items, time.time())
                    meta["continue"] = base64.urlsafe_b64encode(json.dumps([snap_id, start + limit]).encode()).decode()
                    meta["remainingItemCount"] = len(items) - start - limit
        if expired:
            # {"expireContinue": N}: the 410 comes N ms late, as a compaction after writes would (a
            # test writes meanwhile, so the next list has a newer resourceVersion than the first page).
            if type(fault) in (int, float) and not isinstance(fault, bool):
                time.sleep(fault / 1000.0)
            return self.send_json(410, status_obj(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."))
        if "as=Table" in self.headers.get("Accept", ""):
            return self.send_json(200, self.table(page, meta))
        api_version, item_kind = Store.KINDS.get(kind, ("v1", "Pod"))
        self.send_json(200, {"kind": item_kind + "List", "apiVersion": api_version, "metadata": meta, "items": page})

    def table(self, pods, meta):
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
                                      {"name": "Status", "type": "string", "format": "", "description": "Phase", "priority": 0},
                                      {"name": "Node", "type": "string", "format": "", "description": "Node", "priority": 0}],
                "rows": [{"cells": [p["metadata"]["name"], p["status"].get("phase", ""), p["spec"].get("nodeName", "")],
                          "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]}}
                         for p in pods]}

    # ---- watch ----
    def start_chunked(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def write_events(self, lines):
        """Writes whole events, cut into randomly sized chunks (a chunk may end inside an event,
        even inside a multi-byte character, or hold several events)."""
        data = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
        rng = self.server.rng
        while data:
            n = rng.randint(1, max(1, len(data))) if rng.random() < 0.5 else len(data)
            self.write_chunk(data[:n])
            data = data[n:]

    def watch(self, ns, q, kind="pods"):
        store = self.server.store
        sel = self.selectors(q)
        if sel is None:
            return
        fields, labels = sel
        bookmarks = parse_bool(q.get("allowWatchBookmarks", ""))
        timeout = float(q.get("timeoutSeconds") or 1800)
        rv_text = q.get("resourceVersion", "")
        with store.lock:
            store.stats["watches"] += 1
            gen = store.generation
            if rv_text in ("", "0"):
                # "most recent" / "any": the current state as ADDED events, then changes.
                backlog = [("ADDED", json.loads(json.dumps(p))) for k, p in sorted(store.objects[kind].items())]
                since = store.rv
            else:
                try:
                    since = int(rv_text)
                except ValueError:
                    return self.send_json(400, status_obj(400, "BadRequest", "invalid resourceVersion %r" % rv_text))
                backlog = None
                if since < store.compacted or since > store.rv:
                    if store.faults.get("watch410Http", 0) > 0:
                        store.faults["watch410Http"] -= 1
                        return self.send_json(410, status_obj(410, "Expired", "too old resource version: %d (%d)" % (since, store.compacted)))
                    backlog = "expired"
                else:
                    backlog = [(t, o) for (r, t, o, k) in store.history if r > since and k == kind]
        self.close_connection = True
        if self.stay_silent():
            return
        self.start_chunked()
        try:
            if backlog == "expired":
                self.write_events([{"type": "ERROR", "object": status_obj(410, "Expired", "too old resource version: %s (%d)" % (rv_text, store.compacted))}])
                self.write_chunk(b"")
                return
            self.write_events([{"type": t, "object": o} for t, o in backlog if matches(o, ns, fields, labels)])
            deadline = time.time() + timeout
            next_bookmark = time.time() + self.server.bookmark_interval
            while True:
                with store.lock:
                    while (store.rv == since and store.generation == gen and not store.faults.get("silent")
                           and time.time() < min(deadline, next_bookmark)):
                        store.lock.wait(min(deadline, next_bookmark) - time.time())
                    fault = None
                    if store.generation != gen:
                        fault = store.faults.get("watchEnd", "drop")
                    new = [(r, t, o) for (r, t, o, k) in store.history if r > since and k == kind]
                    if new:
                        since = new[-1][0]
                    since = max(since, store.rv)  # changes of other kinds move the version too
                    cur_rv = store.rv
                if fault == "drop":  # half an event, then the connection dies: no terminating chunk
                    self.write_chunk(b'{"type":"MODIFIED","object":{"kind":"Pod","metad')
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                if self.stay_silent():
                    return
                if fault == "expire":
                    self.write_events([{"type": "ERROR", "object": status_obj(410, "Expired", "too old resource version")}])
                    self.write_chunk(b"")
                    return
                if fault == "down":
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                self.write_events([{"type": t, "object": o} for (r, t, o) in new if matches(o, ns, fields, labels)])
                if time.time() >= deadline:
                    self.write_chunk(b"")  # the server's timeout: a clean end
                    return
                if bookmarks and time.time() >= next_bookmark:
                    self.write_events([{"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(cur_rv)}}}])
                if time.time() >= next_bookmark:
                    next_bookmark = time.time() + self.server.bookmark_interval
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return

    def stay_silent(self):
        """While the "silent" fault is set, a watch says nothing at all and keeps its connection
        open (a stuck proxy or apiserver). Returns True if it was silent (the stream is done)."""
        store = self.server.store
        if not store.faults.get("silent"):
            return False
        while store.faults.get("silent") and not self.server.stopping:
            time.sleep(0.1)
        return True

    # ---- test control ----
    def fake_get(self, path):
        store = self.server.store
        with store.lock:
            if path == "/fake/stats":
                return self.send_json(200, dict(store.stats, rv=store.rv, pods=len(store.pods)))
            if path == "/fake/events":
                return self.send_json(200, store.events)
        self.send_json(404, status_obj(404, "NotFound", "no such fake endpoint"))

    def fake_post(self, path):
        store = self.server.store
        body = self.read_body()
        if path == "/fake/pods":
            pods = body if isinstance(body, list) else [body]
            out = [store.upsert(p, save=False) for p in pods]
            with store.lock:
                store.save()
            return self.send_json(201, out if isinstance(body, list) else out[0])
        if path in ("/fake/services", "/fake/endpointslices"):
            kind = path[len("/fake/"):]
            if isinstance(body, list):  # many at once (benchmarks)
                return self.send_json(201, [store.upsert_object(kind, o) for o in body])
            return self.send_json(201, store.upsert_object(kind, body))
        if path == "/fake/daemonsets":
            md = body["metadata"]
            body.update({"apiVersion": "apps/v1", "kind": "DaemonSet"})
            md.setdefault("uid", str(uuid.uuid4()))
            with store.lock:
                store.daemonsets[(md["namespace"], md["name"])] = body
            return self.send_json(201, body)
        if path == "/fake/compact":
            with store.lock:
                store.compacted = store.rv + 1
                store.history = []
            return self.send_json(200, {"compacted": store.compacted})
        if path == "/fake/tokens":
            with store.lock:
                store.tokens = set(body["tokens"])
            return self.send_json(200, {"tokens": len(store.tokens)})
        if path == "/fake/faults":
            with store.lock:
                for k, v in body.items():
                    if v is None:
                        store.faults.pop(k, None)
                    else:
                        store.faults[k] = v
                if "silent" in body:
                    store.lock.notify_all()
                if "watchEnd" in body and body["watchEnd"] is not None or body.get("down"):
                    if body.get("down"):
                        store.faults["watchEnd"] = "down"
                    store.generation += 1  # every open watch ends the chosen way
                    store.lock.notify_all()
            return self.send_json(200, store.faults)
        self.send_json(404, status_obj(404, "NotFound", "no such fake endpoint"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once serving")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca", help="accept client certificates signed by this CA")
    ap.add_argument("--token", action="append", default=[], help="a valid bearer token (repeatable)")
    ap.add_argument("--state", help="persist pods here and load them at start (as etcd would)")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    server = ThreadingHTTPServer((a.listen, a.port), Handler)
    server.daemon_threads = True
    server.store = Store(a.state)
    server.store.tokens = set(a.token)
    server.rng = random.Random(a.seed)
    server.bookmark_interval = a.bookmark_interval
    server.verbose = a.verbose
    server.stopping = False
    server.tls = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.load_verify_locations(a.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        server.tls = ctx
    port = server.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(a.port_file + ".tmp", a.port_file)
    sys.stderr.write("fake-apiserver: serving %s on %s:%d\n" % ("https" if a.cert else "http", a.listen, port))
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping = True


if __name__ == "__main__":
    main()
