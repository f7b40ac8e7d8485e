#!/usr/bin/env python3
"""Checks of a rendered overlay (`kubectl kustomize`) that schema validation cannot make.

kubernetes-validate knows no PodMonitor/ServiceMonitor schema, and no schema knows whether a
monitor's selector finds the pods, whether its port exists, or whether the shutdown timings fit the
grace period. This script checks those, and the rest of what deploy/README.md promises:

- monitors (monitoring.coreos.com/v1 PodMonitor, ServiceMonitor): a namespaceSelector that names
  the pods' namespace, a selector that matches rendered pods (or Services), a named port that
  exists on them, path /metrics;
- every pod that runs tokengate: preStop sleep, and preStop + TOKENGATE_SERVER_DRAIN_DELAY +
  TOKENGATE_SERVER_SHUTDOWN_GRACE within terminationGracePeriodSeconds; probes on the admin port;
  image by digest; no service account token; a NetworkPolicy that opens the proxy port and admits
  the admin port from the monitoring namespace only; in a sidecar pod, a preStop sleep on the app
  containers too;
- every container: the restricted security context and resource requests/limits;
- an edge gateway (tokengate as a regular container): PodDisruptionBudget, autoscaling/v2
  HorizontalPodAutoscaler, zone and hostname spread, config from a ConfigMap and a Secret mounted
  as files.

Usage:
  check_manifests.py NAME RENDERED.yaml              check; one line on success, errors otherwise
  check_manifests.py --self-test NAME RENDERED.yaml  break the manifests in known ways and
                                                     require every break to be reported
NAME (e.g. the overlay's directory) stands for the rendered file in every message.

Errors name the file, kind and name. Exit status 1 on any error. Needs PyYAML (a dependency of
kubernetes-validate).
"""

import copy
import re
import sys

import yaml

MONITOR_API = "monitoring.coreos.com/v1"
MONITOR_KINDS = {"PodMonitor", "ServiceMonitor"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
TOKENGATE = "tokengate"
ADMIN_PORT = ("admin", 9090)
PROXY_PORT = ("http", 8080)
MONITORING_NAMESPACE = "monitoring"
# tokengate's defaults when the variables are not set (server.drain_delay, server.shutdown_grace).
DEFAULT_DRAIN_DELAY = 5.0
DEFAULT_SHUTDOWN_GRACE = 20.0
DEFAULT_GRACE_PERIOD = 30
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def duration_seconds(text):
    """A humantime duration as tokengate's config takes it: `5s`, `500ms`, `1m 30s`."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text.strip()):
        raise ValueError(f"cannot read duration {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            raise ValueError(f"unknown unit in duration {text!r}")
        total += float(number) * units[unit]
    return total


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against a label map."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def port_refers_to(ref, named):
    """Whether a port reference (name or number) means the (name, number) pair `named`."""
    return ref == named[0] or ref == named[1] or ref == str(named[1])


class Checker:
    def __init__(self, path, docs):
        self.path = path  # the name shown in messages
        self.docs = [d for d in docs if d]
        self.errors = []

    def error(self, doc, message):
        meta = doc.get("metadata") or {}
        self.errors.append(f"{self.path}: {doc.get('kind')}/{meta.get('name')}: {message}")

    def of_kind(self, *kinds):
        return [d for d in self.docs if d.get("kind") in kinds]

    def pods(self):
        """(workload, namespace, pod template labels, pod spec) for each rendered workload."""
        for d in self.of_kind(*WORKLOAD_KINDS):
            template = d.get("spec", {}).get("template", {})
            yield (
                d,
                d.get("metadata", {}).get("namespace"),
                template.get("metadata", {}).get("labels") or {},
                template.get("spec") or {},
            )

    def run(self):
        if not self.of_kind(*MONITOR_KINDS):
            self.errors.append(f"{self.path}: no PodMonitor or ServiceMonitor is rendered")
        for doc in self.of_kind(*MONITOR_KINDS):
            self.check_monitor(doc)
        gateways = 0
        for workload, namespace, labels, spec in self.pods():
            self.check_security(workload, spec)
            if any(c.get("name") == TOKENGATE for c in all_containers(spec)):
                gateways += 1
                self.check_gateway_pod(workload, namespace, labels, spec)
        if gateways == 0:
            self.errors.append(f"{self.path}: no workload runs a container named {TOKENGATE}")
        return self.errors

    # -- monitors -------------------------------------------------------------------------------

    def check_monitor(self, mon):
        if mon.get("apiVersion") != MONITOR_API:
            self.error(mon, f"apiVersion is {mon.get('apiVersion')!r}, expected {MONITOR_API}")
        spec = mon.get("spec") or {}
        ns_selector = spec.get("namespaceSelector")
        if not ns_selector or not (ns_selector.get("any") or ns_selector.get("matchNames")):
            self.error(mon, "spec.namespaceSelector is missing (matchNames or any: true)")
            names = None
        else:
            names = None if ns_selector.get("any") else ns_selector["matchNames"]
        # Each target: (the rendered object, its namespace, the port names it offers).
        if mon["kind"] == "PodMonitor":
            endpoints = spec.get("podMetricsEndpoints") or []
            targets = [
                (w, ns, {p.get("name") for c in all_containers(s) for p in c.get("ports") or []})
                for w, ns, labels, s in self.pods()
                if selector_matches(spec.get("selector"), labels)
            ]
        else:
            endpoints = spec.get("endpoints") or []
            targets = [
                (s, s["metadata"].get("namespace"), {p.get("name") for p in s["spec"].get("ports") or []})
                for s in self.of_kind("Service")
                if selector_matches(spec.get("selector"), s["metadata"].get("labels") or {})
            ]
        if not targets:
            what = "pod template" if mon["kind"] == "PodMonitor" else "Service"
            self.error(mon, f"spec.selector matches no rendered {what}")
        for target, ns, _ in targets:
            if names is not None and ns not in names:
                self.error(mon, f"namespaceSelector {names} leaves out {target['kind']}/"
                                f"{target['metadata']['name']} in namespace {ns!r}")
        if not endpoints:
            self.error(mon, "no scrape endpoints")
        for i, ep in enumerate(endpoints):
            if ep.get("path") != "/metrics":
                self.error(mon, f"endpoint {i}: path is {ep.get('path')!r}, expected /metrics")
            port = ep.get("port")
            if port != ADMIN_PORT[0]:
                self.error(mon, f"endpoint {i}: port is {port!r}, expected tokengate's admin port "
                                f"{ADMIN_PORT[0]!r}")
            for target, _, port_names in targets:
                if port not in port_names:
                    self.error(mon, f"endpoint {i}: port {port!r} is not a named port of "
                                    f"{target['kind']}/{target['metadata']['name']}")

    # -- every container ------------------------------------------------------------------------

    def check_security(self, workload, spec):
        pod_sc = spec.get("securityContext") or {}
        for c in all_containers(spec):
            sc = c.get("securityContext") or {}
            where = f"container {c.get('name')}"
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                self.error(workload, f"{where}: runAsNonRoot is not true")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.error(workload, f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.error(workload, f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                self.error(workload, f"{where}: capabilities.drop lacks ALL")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                self.error(workload, f"{where}: seccompProfile is {seccomp!r}, expected RuntimeDefault")
            res = c.get("resources") or {}
            for field in ("cpu", "memory"):
                if field not in (res.get("requests") or {}):
                    self.error(workload, f"{where}: no {field} request")
            if "memory" not in (res.get("limits") or {}):
                self.error(workload, f"{where}: no memory limit")

    # -- pods that run tokengate ----------------------------------------------------------------

    def check_gateway_pod(self, workload, namespace, labels, spec):
        sidecars = [c for c in spec.get("initContainers") or [] if c.get("name") == TOKENGATE]
        regular = [c for c in spec.get("containers") or [] if c.get("name") == TOKENGATE]
        for c in sidecars:
            if c.get("restartPolicy") != "Always":
                self.error(workload, "init container tokengate is not a native sidecar "
                                     "(restartPolicy: Always)")
        for c in sidecars + regular:
            self.check_tokengate_container(workload, c)

        # Shutdown budget: every preStop starts when the pod is deleted; tokengate's SIGTERM comes
        # after its own preStop (and, as a sidecar, after the app has exited); then the drain delay
        # and the shutdown grace.
        grace_period = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD)
        sleeps = [prestop_sleep(c) or 0 for c in all_containers(spec)]
        for c in sidecars + regular:
            env = {e["name"]: e.get("value") for e in c.get("env") or [] if "name" in e}
            try:
                drain = duration_seconds(env["TOKENGATE_SERVER_DRAIN_DELAY"]) \
                    if env.get("TOKENGATE_SERVER_DRAIN_DELAY") else DEFAULT_DRAIN_DELAY
                grace = duration_seconds(env["TOKENGATE_SERVER_SHUTDOWN_GRACE"]) \
                    if env.get("TOKENGATE_SERVER_SHUTDOWN_GRACE") else DEFAULT_SHUTDOWN_GRACE
            except ValueError as e:
                self.error(workload, f"container tokengate: {e}")
                continue
            total = max(sleeps) + drain + grace
            if total > grace_period:
                self.error(workload, f"shutdown does not fit: preStop {max(sleeps)} s + drain "
                                     f"{drain:g} s + grace {grace:g} s = {total:g} s > "
                                     f"terminationGracePeriodSeconds {grace_period}")
            self.budget = f"preStop + drain + grace {total:g} s of {grace_period} s"
        if sidecars:
            for c in spec.get("containers") or []:
                if prestop_sleep(c) is None:
                    self.error(workload, f"container {c.get('name')}: no preStop sleep; with a "
                                         "tokengate sidecar the app must outlast endpoint updates")

        if spec.get("automountServiceAccountToken") is not False:
            self.error(workload, "pod spec: automountServiceAccountToken is not false")
        account = spec.get("serviceAccountName")
        if not account or account == "default":
            self.error(workload, "pod spec: no dedicated serviceAccountName")
        else:
            found = [s for s in self.of_kind("ServiceAccount") if s["metadata"]["name"] == account]
            if not found:
                self.error(workload, f"ServiceAccount {account!r} is not rendered")
            for s in found:
                if s.get("automountServiceAccountToken") is not False:
                    self.error(s, "automountServiceAccountToken is not false")

        self.check_network_policy(workload, namespace, labels)
        if regular:
            self.check_edge(workload, labels, spec, regular[0])

    def check_tokengate_container(self, workload, c):
        where = f"container {TOKENGATE}"
        if not DIGEST.search(c.get("image", "")):
            self.error(workload, f"{where}: image {c.get('image')!r} is not pinned by digest")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for name, number in (ADMIN_PORT, PROXY_PORT):
            if ports.get(name) != number:
                self.error(workload, f"{where}: no port {name} ({number})")
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or not port_refers_to(get.get("port"), ADMIN_PORT):
                self.error(workload, f"{where}: {probe} is not GET {path} on the admin port")
        if prestop_sleep(c) is None:
            self.error(workload, f"{where}: no lifecycle.preStop.sleep")

    def check_network_policy(self, workload, namespace, labels):
        policies = [
            p for p in self.of_kind("NetworkPolicy")
            if p["metadata"].get("namespace") == namespace
            and selector_matches(p["spec"].get("podSelector"), labels)
            and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
        ]
        if not policies:
            self.error(workload, "no NetworkPolicy selects these pods for Ingress")
            return
        proxy_open = False
        for p in policies:
            for i, rule in enumerate(p["spec"].get("ingress") or []):
                ports = [q.get("port") for q in rule.get("ports") or []]
                peers = rule.get("from") or []
                admits_admin = not ports or any(port_refers_to(q, ADMIN_PORT) for q in ports)
                if admits_admin and not (peers and all(monitoring_only(peer) for peer in peers)):
                    self.error(p, f"ingress rule {i} admits the admin port from outside the "
                                  f"{MONITORING_NAMESPACE} namespace")
                if not peers and any(port_refers_to(q, PROXY_PORT) for q in ports):
                    proxy_open = True
        if not proxy_open:
            self.error(workload, "no NetworkPolicy rule keeps the proxy port open to all")

    def check_edge(self, workload, labels, spec, container):
        name = workload["metadata"]["name"]
        if "replicas" in workload.get("spec", {}):
            self.error(workload, "spec.replicas is set; the HorizontalPodAutoscaler owns it")
        pdbs = [p for p in self.of_kind("PodDisruptionBudget")
                if selector_matches(p["spec"].get("selector"), labels)]
        if not pdbs:
            self.error(workload, "no PodDisruptionBudget selects these pods")
        hpas = [h for h in self.of_kind("HorizontalPodAutoscaler")
                if h.get("apiVersion") == "autoscaling/v2"
                and h["spec"]["scaleTargetRef"].get("kind") == workload["kind"]
                and h["spec"]["scaleTargetRef"].get("name") == name]
        if not hpas:
            self.error(workload, "no autoscaling/v2 HorizontalPodAutoscaler targets it")
        keys = {t.get("topologyKey") for t in spec.get("topologySpreadConstraints") or []
                if selector_matches(t.get("labelSelector"), labels)}
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
            if key not in keys:
                self.error(workload, f"no topologySpreadConstraint over {key}")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounted = {m["name"] for m in container.get("volumeMounts") or []}
        kinds = {k for v in mounted if v in volumes for k in ("configMap", "secret") if k in volumes[v]}
        for kind in ("configMap", "secret"):
            if kind not in kinds:
                self.error(workload, f"container {TOKENGATE}: no {kind} volume mounted")


def all_containers(spec):
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def prestop_sleep(container):
    sleep = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
    return None if sleep is None else sleep.get("seconds")


def monitoring_only(peer):
    """A NetworkPolicy peer that is exactly "every pod of the monitoring namespace"."""
    ns = peer.get("namespaceSelector")
    return (
        set(peer) <= {"namespaceSelector", "podSelector"}
        and ns is not None
        and ns.get("matchLabels") == {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}
        and not ns.get("matchExpressions")
    )


def check(path, docs):
    checker = Checker(path, docs)
    checker.budget = ""
    return checker.run(), checker.budget


# -- self-test: each break must be reported ----------------------------------------------------


def first(docs, kind, pred=lambda d: True):
    for d in docs:
        if d and d.get("kind") == kind and pred(d):
            return d
    return None


def gateway_pod(docs):
    for d in docs:
        if d and d.get("kind") in WORKLOAD_KINDS:
            spec = d["spec"]["template"]["spec"]
            for c in all_containers(spec):
                if c.get("name") == TOKENGATE:
                    return d, spec, c
    return None


def tokengate_env(docs, name, value):
    _, _, c = gateway_pod(docs)
    env = [e for e in c.get("env") or [] if e["name"] != name]
    c["env"] = env + [{"name": name, "value": value}]


def admin_rule(docs):
    p = first(docs, "NetworkPolicy")
    return next(r for r in p["spec"]["ingress"]
                if any(port_refers_to(q.get("port"), ADMIN_PORT) for q in r.get("ports") or []))


def mutate_sidecar_app_prestop(docs):
    _, spec, _ = gateway_pod(docs)
    for c in spec["containers"]:
        c.pop("lifecycle", None)


BREAKS = [
    # (description, applies?, mutation)
    ("PodMonitor scrapes a port name that does not exist",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor")["spec"]["podMetricsEndpoints"][0].update(port="metrics")),
    ("PodMonitor path is not /metrics",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor")["spec"]["podMetricsEndpoints"][0].update(path="/metric")),
    ("PodMonitor has no namespaceSelector",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor")["spec"].pop("namespaceSelector")),
    ("PodMonitor namespaceSelector names another namespace",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor")["spec"]["namespaceSelector"].update(matchNames=["elsewhere"])),
    ("PodMonitor selector matches no pod",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor")["spec"].update(selector={"matchLabels": {"app": "nothing"}})),
    ("PodMonitor has the wrong apiVersion",
     lambda d: first(d, "PodMonitor"),
     lambda d: first(d, "PodMonitor").update(apiVersion="monitoring.coreos.com/v1alpha1")),
    ("no monitor at all",
     lambda d: first(d, "PodMonitor"),
     lambda d: d.remove(first(d, "PodMonitor"))),
    ("tokengate has no preStop sleep",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2].pop("lifecycle")),
    ("preStop sleep too long for the grace period",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["lifecycle"]["preStop"]["sleep"].update(seconds=28)),
    ("drain delay too long for the grace period",
     lambda d: gateway_pod(d),
     lambda d: tokengate_env(d, "TOKENGATE_SERVER_DRAIN_DELAY", "30s")),
    ("grace period shorter than preStop + drain + shutdown grace",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[1].update(terminationGracePeriodSeconds=10)),
    ("shutdown grace unset: tokengate's default (20 s) no longer fits",
     lambda d: gateway_pod(d),
     lambda d: (tokengate_env(d, "TOKENGATE_SERVER_DRAIN_DELAY", "9s"),
                gateway_pod(d)[2].update(env=[e for e in gateway_pod(d)[2]["env"]
                                              if e["name"] != "TOKENGATE_SERVER_SHUTDOWN_GRACE"]))),
    ("pod mounts a service account token",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[1].update(automountServiceAccountToken=True)),
    ("ServiceAccount mounts its token",
     lambda d: first(d, "ServiceAccount"),
     lambda d: first(d, "ServiceAccount").update(automountServiceAccountToken=True)),
    ("NetworkPolicy admits the admin port from anywhere",
     lambda d: first(d, "NetworkPolicy"),
     lambda d: admin_rule(d).pop("from")),
    ("NetworkPolicy admits the admin port from a namespace other than monitoring",
     lambda d: first(d, "NetworkPolicy"),
     lambda d: admin_rule(d)["from"][0]["namespaceSelector"].update(
         matchLabels={"kubernetes.io/metadata.name": "default"})),
    ("NetworkPolicy closes the proxy port",
     lambda d: first(d, "NetworkPolicy"),
     lambda d: first(d, "NetworkPolicy")["spec"].update(ingress=[admin_rule(d)])),
    ("no NetworkPolicy",
     lambda d: first(d, "NetworkPolicy"),
     lambda d: d.remove(first(d, "NetworkPolicy"))),
    ("tokengate's root filesystem is writable",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["securityContext"].update(readOnlyRootFilesystem=False)),
    ("tokengate keeps its capabilities",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["securityContext"].pop("capabilities")),
    ("liveness probe on the wrong path",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["livenessProbe"]["httpGet"].update(path="/healthz")),
    ("readiness probe on the proxy port",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["readinessProbe"]["httpGet"].update(port="http")),
    ("tokengate image by tag",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2].update(image="ghcr.io/example/tokengate:latest")),
    ("tokengate has no memory limit",
     lambda d: gateway_pod(d),
     lambda d: gateway_pod(d)[2]["resources"].pop("limits")),
    ("sidecar app container without preStop sleep",
     lambda d: gateway_pod(d) and gateway_pod(d)[1].get("initContainers"),
     mutate_sidecar_app_prestop),
    ("sidecar is not restartPolicy: Always",
     lambda d: gateway_pod(d) and gateway_pod(d)[1].get("initContainers"),
     lambda d: gateway_pod(d)[2].pop("restartPolicy")),
    ("edge without PodDisruptionBudget",
     lambda d: first(d, "PodDisruptionBudget"),
     lambda d: d.remove(first(d, "PodDisruptionBudget"))),
    ("edge without HorizontalPodAutoscaler",
     lambda d: first(d, "HorizontalPodAutoscaler"),
     lambda d: d.remove(first(d, "HorizontalPodAutoscaler"))),
    ("edge without zone spread",
     lambda d: first(d, "HorizontalPodAutoscaler"),
     lambda d: gateway_pod(d)[1]["topologySpreadConstraints"].pop(0)),
    ("edge without the Secret mounted",
     lambda d: first(d, "HorizontalPodAutoscaler"),
     lambda d: gateway_pod(d)[2].update(volumeMounts=[
         m for m in gateway_pod(d)[2]["volumeMounts"] if m["name"] != "secrets"])),
]


# What each break must be reported as: a break caught only by a side effect proves nothing about
# the check meant for it.
EXPECTED = {
    "PodMonitor scrapes a port name that does not exist": "is not a named port of",
    "PodMonitor path is not /metrics": "expected /metrics",
    "PodMonitor has no namespaceSelector": "namespaceSelector is missing",
    "PodMonitor namespaceSelector names another namespace": "leaves out",
    "PodMonitor selector matches no pod": "matches no rendered pod template",
    "PodMonitor has the wrong apiVersion": "apiVersion is",
    "no monitor at all": "no PodMonitor or ServiceMonitor",
    "tokengate has no preStop sleep": "no lifecycle.preStop.sleep",
    "preStop sleep too long for the grace period": "shutdown does not fit",
    "drain delay too long for the grace period": "shutdown does not fit",
    "grace period shorter than preStop + drain + shutdown grace": "shutdown does not fit",
    "shutdown grace unset: tokengate's default (20 s) no longer fits": "grace 20 s",
    "pod mounts a service account token": "pod spec: automountServiceAccountToken",
    "ServiceAccount mounts its token": "ServiceAccount/",
    "NetworkPolicy admits the admin port from anywhere": "admits the admin port",
    "NetworkPolicy admits the admin port from a namespace other than monitoring": "admits the admin port",
    "NetworkPolicy closes the proxy port": "keeps the proxy port open",
    "no NetworkPolicy": "no NetworkPolicy selects",
    "tokengate's root filesystem is writable": "readOnlyRootFilesystem",
    "tokengate keeps its capabilities": "capabilities.drop",
    "liveness probe on the wrong path": "livenessProbe",
    "readiness probe on the proxy port": "readinessProbe",
    "tokengate image by tag": "not pinned by digest",
    "tokengate has no memory limit": "no memory limit",
    "sidecar app container without preStop sleep": "the app must outlast",
    "sidecar is not restartPolicy: Always": "not a native sidecar",
    "edge without PodDisruptionBudget": "no PodDisruptionBudget",
    "edge without HorizontalPodAutoscaler": "HorizontalPodAutoscaler targets",
    "edge without zone spread": "topology.kubernetes.io/zone",
    "edge without the Secret mounted": "no secret volume",
}


def self_test(name, docs):
    errors, _ = check(name, docs)
    if errors:
        return [f"{name}: self-test skipped: the manifests must pass first"]
    failures, ran = [], 0
    for description, applies, mutate in BREAKS:
        broken = copy.deepcopy(docs)
        if not applies(broken):
            continue
        mutate(broken)
        ran += 1
        found, _ = check(f"{name} [broken: {description}]", broken)
        if not any(EXPECTED[description] in e for e in found):
            failures.append(f"{name}: self-test: not reported: {description} "
                            f"(expected {EXPECTED[description]!r}; got {found})")
    if not failures:
        print(f"{name}: self-test: all {ran} deliberately broken variants were reported")
    return failures


def main(argv):
    test = argv[1:2] == ["--self-test"]
    args = argv[2:] if test else argv[1:]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    name, path = args
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if test:
        errors = self_test(name, docs)
    else:
        errors, budget = check(name, docs)
        if not errors:
            kinds = sorted({d["kind"] for d in docs if d["kind"] in MONITOR_KINDS})
            print(f"{name}: ok: {', '.join(kinds)}, pods, NetworkPolicy ({budget})")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
