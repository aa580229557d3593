#!/usr/bin/env python3
"""Checks charts/colo as `helm install` would see it, without helm:

- values.yaml, and every values file under test/chart/values/, validate against
  values.schema.json (Helm validates values the same way); the bad-*.yaml files must be refused;
- each rendering parses, and every object is checked key by key against the Kubernetes API types
  of python3-kubernetes' models (an unknown or misspelt field, a wrong type, or a missing required
  field fails), then deserialised into the model;
- the chart keeps its contract: what the DaemonSet must have (host network and PID, node-critical
  priority, tolerations, NODE_NAME from the downward API, probes, mount propagation), RBAC rules
  that are exactly the ones docs/kubernetes.md lists, and a ConfigMap colo-node accepts.

usage: check_chart.py RENDER_SCRIPT COLO_NODE_BINARY
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes.client as k8s
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "colo")
RENDER, COLO_NODE = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


# ---- values against the schema ----
schema = json.load(open(os.path.join(CHART, "values.schema.json")))
defaults = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))


def merged(path):
    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out
    return merge(defaults, yaml.safe_load(open(path)) or {})


def schema_errors(values):
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(values)]


check(not schema_errors(defaults), "values.yaml satisfies values.schema.json")
value_files = sorted(glob.glob(os.path.join(ROOT, "test", "chart", "values", "*.yaml")))
for f in value_files:
    errs = schema_errors(merged(f))
    name = os.path.basename(f)
    if name.startswith("bad-"):
        check(bool(errs), "schema refuses %s (%s)" % (name, errs[0] if errs else "accepted!"))
    else:
        check(not errs, "schema accepts %s %s" % (name, errs))

# Every key of values.yaml is documented by a comment line just above it.
lines = open(os.path.join(CHART, "values.yaml")).read().splitlines()
undocumented = [l.strip() for i, l in enumerate(lines)
                if re.match(r"^\s*[A-Za-z][A-Za-z0-9]*:", l) and (i == 0 or not lines[i - 1].strip().startswith("#"))
                and not re.match(r"^\s*(requests|limits):", l)]
check(not undocumented, "every key in values.yaml has its comment %s" % undocumented)

# ---- strict structural check against the API types ----
MODELS = {("v1", "ConfigMap"): k8s.V1ConfigMap, ("v1", "ServiceAccount"): k8s.V1ServiceAccount, ("v1", "Service"): k8s.V1Service,
          ("apps/v1", "DaemonSet"): k8s.V1DaemonSet, ("batch/v1", "Job"): k8s.V1Job,
          ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.V1ClusterRole,
          ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.V1ClusterRoleBinding,
          ("rbac.authorization.k8s.io/v1", "Role"): k8s.V1Role,
          ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.V1RoleBinding}


def model_class(type_name):
    return getattr(k8s, type_name, None)


def strict(obj, type_name, path, errors):
    """Checks obj (parsed YAML) against the model type name as python-kubernetes declares it."""
    if type_name.startswith("list["):
        if not isinstance(obj, list):
            errors.append("%s: expected a list" % path)
            return
        for i, item in enumerate(obj):
            strict(item, type_name[5:-1], "%s[%d]" % (path, i), errors)
        return
    if type_name.startswith("dict("):
        if not isinstance(obj, dict):
            errors.append("%s: expected a map" % path)
            return
        inner = type_name[5:-1].split(", ", 1)[1]
        for k, v in obj.items():
            strict(v, inner, "%s.%s" % (path, k), errors)
        return
    scalar = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "object": object}
    if type_name in scalar:
        if type_name == "int" and isinstance(obj, bool) or not isinstance(obj, scalar[type_name]):
            errors.append("%s: expected %s, got %r" % (path, type_name, obj))
        return
    cls = model_class(type_name)
    if cls is None:
        errors.append("%s: unknown type %s" % (path, type_name))
        return
    if not isinstance(obj, dict):
        errors.append("%s: expected an object (%s)" % (path, type_name))
        return
    by_json = {v: k for k, v in cls.attribute_map.items()}
    for key, value in obj.items():
        if key not in by_json:
            errors.append("%s: unknown field %r for %s" % (path, key, type_name))
            continue
        if value is None:
            continue
        t = cls.openapi_types[by_json[key]]
        if type_name == "V1ContainerPort" and key == "containerPort" or t == "object":
            pass
        strict(value, t, path + "." + key, errors)


class _Resp:
    def __init__(self, data):
        self.data = data


def render(*args):
    r = subprocess.run(["bash", RENDER] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("render failed: " + r.stderr)
    return [d for d in yaml.safe_load_all(r.stdout) if d]


api = k8s.ApiClient()
renderings = {"defaults": render()}
for f in value_files:
    if not os.path.basename(f).startswith("bad-"):
        renderings[os.path.basename(f)] = render("-f", f)
for label, docs in renderings.items():
    errors = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):  # a CRD: no model; its essentials
            ep = d.get("spec", {}).get("endpoints", [{}])[0]
            if not d["spec"].get("selector", {}).get("matchLabels") or ep.get("port") != "metrics":
                errors.append("ServiceMonitor: selector or endpoint missing")
            continue
        cls = MODELS.get(key)
        if cls is None:
            errors.append("unexpected object %s" % (key,))
            continue
        strict(d, cls.__name__, d["kind"], errors)
        try:
            api.deserialize(_Resp(json.dumps(d)), cls.__name__)
        except (ValueError, TypeError) as e:
            errors.append("%s: %s" % (d["kind"], e))
    check(not errors, "rendering with %s: %d objects match the Kubernetes API types %s" % (label, len(docs), errors[:5]))

# The strict check must catch a misspelt field (a test of the test).
errs = []
strict({"spec": {"template": {"spec": {"hostNetwrok": True}}}}, "V1DaemonSet", "DaemonSet", errs)
check(any("hostNetwrok" in e for e in errs), "a misspelt field is caught by the strict check")

# ---- the chart's contract ----
docs = renderings["defaults"]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
ds = by_kind["DaemonSet"][0]
pod = ds["spec"]["template"]["spec"]
node = next(c for c in pod["containers"] if c["name"] == "colo-node")
check(pod.get("hostNetwork") is True and pod.get("hostPID") is True, "DaemonSet: hostNetwork and hostPID")
check(pod.get("priorityClassName") == "system-node-critical", "DaemonSet: priorityClassName system-node-critical")
check({"operator": "Exists"} in pod.get("tolerations", []), "DaemonSet: tolerates every taint (runs on every node)")
env = {e["name"]: e for e in node.get("env", [])}
check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
      "DaemonSet: NODE_NAME from the downward API")
check(node["livenessProbe"]["httpGet"]["path"] == "/healthz" and node["readinessProbe"]["httpGet"]["path"] == "/readyz",
      "DaemonSet: probes on /healthz and /readyz")
check(node["securityContext"].get("privileged") is True and node.get("resources", {}).get("requests"),
      "DaemonSet: privileged, with resources")
mounts = {m["name"]: m for m in node["volumeMounts"]}
check(mounts["run-colo"].get("mountPropagation") == "Bidirectional" and mounts["bpffs"].get("mountPropagation") == "Bidirectional",
      "DaemonSet: /run/colo and bpffs mounts propagate to the host (Bidirectional)")
check(ds["spec"]["updateStrategy"]["type"] == "RollingUpdate", "DaemonSet: rolling update")
check([c["name"] for c in pod["initContainers"]] == ["install-cni"] and any(c["name"] == "cni-chain" for c in pod["containers"]),
      "DaemonSet: installer as init container and as watching sidecar")
cm = yaml.safe_load(by_kind["ConfigMap"][0]["data"]["config.yaml"])
with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
    yaml.safe_dump(cm, f)
    f.flush()
    r = subprocess.run([COLO_NODE, "check-config", "--config", f.name, "--node-name", "n1"], capture_output=True, text=True)
check(r.returncode == 0 and cm["mode"] == "kubernetes", "ConfigMap: colo-node accepts config.yaml (%s)" % (r.stdout + r.stderr).strip())
rules = sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in by_kind["ClusterRole"][0]["rules"])
check(rules == [(("",), ("events",), ("create",)), (("",), ("pods",), ("get", "list", "watch")), (("",), ("services",), ("get", "list", "watch")),
               (("discovery.k8s.io",), ("endpointslices",), ("get", "list", "watch"))],
      "ClusterRole: exactly pods, services and endpointslices get/list/watch and events create")
roles = {r["metadata"]["name"]: r for r in by_kind["Role"]}
check(roles["colo"]["rules"] == [{"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": ["colo"], "verbs": ["get"]}],
      "Role: get on its own DaemonSet only")
check(pod.get("nodeSelector") == {"kubernetes.io/os": "linux"}, "DaemonSet: kubernetes.io/os: linux by default")
installers = pod["initContainers"] + [c for c in pod["containers"] if c["name"] == "cni-chain"]
for c in installers:
    sc = c.get("securityContext", {})
    check(not sc.get("privileged") and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities") ==
          {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]} and sc.get("readOnlyRootFilesystem") is True,
          "%s: not privileged; only CHOWN, DAC_OVERRIDE, FOWNER; read-only root" % c["name"])
    check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")), "%s: has resources" % c["name"])
    check({m["mountPath"] for m in c["volumeMounts"]} == {"/host/cni/bin", "/host/cni/net.d", "/run/colo"},
          "%s: only the host paths it uses" % c["name"])
    check("--status-file" in c["command"], "%s: reports whether colo-cni is chained" % c["name"])
check("--wait" in pod["initContainers"][0]["command"], "install-cni waits for the primary's configuration")
check("bpfPinDir: \"/sys/fs/bpf/colo-{node}\"" in by_kind["ConfigMap"][0]["data"]["config.yaml"], "ConfigMap: a pin dir per node")
check(cm.get("exposeDebugPods") == "false" and cm.get("cniChainStatusFile"), "ConfigMap: /debug/pods local only; chain status read")
hook = [d for d in docs if d["kind"] == "Job"]
check(len(hook) == 1 and hook[0]["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" and
      hook[0]["spec"]["template"]["spec"]["containers"][0]["command"][1] == "mark-uninstall",
      "the uninstall hook: a pre-delete Job running colo-node mark-uninstall")
hook_role = roles.get("colo-uninstall", {})
check(hook_role.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "pre-delete" and
      sorted((tuple(r["resources"]), tuple(r["verbs"])) for r in hook_role.get("rules", [])) == [(("events",), ("list",)), (("pods",), ("list", "patch"))],
      "the hook's own Role (a hook too): pods list/patch, events list")
manifests = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "manifests", "colo.yaml"))) if d]
check(not any("helm.sh/hook" in d.get("metadata", {}).get("annotations", {}) for d in manifests),
      "manifests/ (kubectl apply) has no hook: it would mark colo for uninstall at install")
custom = {d["kind"]: d for d in renderings["custom.yaml"]}
chain = next(c for c in custom["DaemonSet"]["spec"]["template"]["spec"]["containers"] if c["name"] == "cni-chain")
check(chain["command"][chain["command"].index("--conf-file") + 1] == "10-calico.conflist" if "--conf-file" in chain["command"] else False,
      "cni.confFile names the file to chain into")
bad = subprocess.run(["bash", RENDER, "-f", os.path.join(ROOT, "test", "chart", "values", "bad-servicemonitor-loopback.yaml")],
                     capture_output=True, text=True)
check(bad.returncode != 0 and "serviceMonitor.enabled needs colo-node to listen" in bad.stderr,
      "a ServiceMonitor with the agent on loopback is refused by the templates too (%s)" % bad.stderr.strip()[-120:])
check("ServiceMonitor" not in by_kind, "no ServiceMonitor unless asked")
check(any(d["kind"] == "ServiceMonitor" for d in renderings.get("monitoring.yaml", [])), "serviceMonitor.enabled renders a ServiceMonitor")
# agent.httpAddress's port everywhere colo-node is called; its host for the probes unless it is every address.
probes = [c[p]["httpGet"] for c in pod["containers"] if c["name"] == "colo-node" for p in ("startupProbe", "livenessProbe", "readinessProbe")]
check(all(h.get("port") == 9756 and h.get("host") == "127.0.0.1" for h in probes), "defaults: probes on 127.0.0.1:9756 (agent.httpAddress)")
port_docs = renderings.get("port.yaml", [])
port_node = next(c for d in port_docs if d["kind"] == "DaemonSet" for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "colo-node")
port_probes = [port_node[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
port_svc = next(d for d in port_docs if d["kind"] == "Service")
check(all(h.get("port") == 9100 and "host" not in h for h in port_probes) and
      [(p["port"], p["targetPort"]) for p in port_svc["spec"]["ports"]] == [(9100, 9100)],
      "agent.httpAddress 0.0.0.0:9100: probes (on the pod's address) and the metrics Service use 9100")
notes = subprocess.run(["bash", RENDER, "--notes"], capture_output=True, text=True).stdout
check("colo.dev/enabled=true" in notes, "NOTES.txt renders")

print("%d failed" % len(failures))
sys.exit(1 if failures else 0)
