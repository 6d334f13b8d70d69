"""Cluster state of the stand-ins, kept in etcd under /kubeha-standin/ (shared by kubeadm and the API server).

Key layout (values are JSON):
  /kubeha-standin/cluster-info               {"ca": PEM, "server": "https://ENDPOINT"}   (public)
  /kubeha-standin/cluster-config             the ClusterConfiguration of init (kubeadm-config)
  /kubeha-standin/bootstrap-tokens/ID        {"id","secret","expires"(epoch|null),"usages","groups","description"}
  /kubeha-standin/kubeadm-certs              {"expires", "iv", "ciphertext", "mac"}  (AES-256-CBC + HMAC)
  /kubeha-standin/nodes/NAME                 a v1 Node object
  /kubeha-standin/manifests/KIND/NS/NAME     objects stored by `kubectl apply` (NS "_" = cluster scoped)
"""

import base64
import hashlib
import hmac
import json
import re

from standin_common import TOKEN_RE, now

NODE_GRACE_SECONDS = 40  # kube-controller-manager's node-monitor-grace-period

# Labels a kubelet may set on its own Node (NodeRestriction admission plugin).
_ALLOWED_KUBELET_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
}
_LABEL_KEY_RE = re.compile(r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?"
                           r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def label_problem(key, value):
    """Why key=value is not a valid Kubernetes label, or None."""
    prefix = key.split("/")[0] if "/" in key else ""
    if not _LABEL_KEY_RE.match(key) or len(prefix) > 253:
        return f"invalid label key \"{key}\""
    if not _LABEL_VALUE_RE.match(value):
        return f"invalid label value \"{value}\" for key \"{key}\""
    return None


def kubelet_may_set(key):
    """NodeRestriction: kubelets may not set other kubernetes.io / k8s.io labels (e.g. node-role.*)."""
    if "/" not in key:
        return True
    domain = key.split("/")[0]
    if key in _ALLOWED_KUBELET_LABELS:
        return True
    if domain.endswith("kubelet.kubernetes.io") or domain.endswith("node.kubernetes.io"):
        return True
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io") or domain == "k8s.io"
                or domain.endswith(".k8s.io"))


def parse_node_labels(text):
    """--node-labels "k=v,k2=v2" -> dict, validated like the kubelet does."""
    labels = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise ValueError(f"--node-labels: \"{item}\" is not key=value")
        k, v = item.split("=", 1)
        problem = label_problem(k, v)
        if problem:
            raise ValueError(f"--node-labels: {problem}")
        if not kubelet_may_set(k):
            raise ValueError(f"--node-labels: unknown 'kubernetes.io' or 'k8s.io' label \"{k}\": a kubelet "
                             f"may not set it (NodeRestriction); apply it with kubectl label afterwards")
        labels[k] = v
    return labels


def node_object(name, labels, taints, address, version, created=None):
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": created or _ts()},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]
            if address else [{"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                            "message": "Kubelet never posted node status.", "lastHeartbeatTime": None}],
            "nodeInfo": {"kubeletVersion": version, "operatingSystem": "linux", "architecture": "amd64"},
        },
    }


def with_computed_ready(node):
    """Ready is what the kubelet last posted, turned Unknown when the heartbeat is older than the grace."""
    node = json.loads(json.dumps(node))
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") != "Ready":
            continue
        hb = c.get("lastHeartbeatEpoch")
        if hb is not None and now() - hb > NODE_GRACE_SECONDS and c.get("status") == "True":
            c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
        c.pop("lastHeartbeatEpoch", None)
    return node


def _ts():
    from standin_common import rfc3339
    return rfc3339(now())


def token_record(token, ttl_seconds, description="", usages=None, groups=None):
    m = TOKEN_RE.match(token)
    return {"id": m.group(1), "secret": m.group(2),
            "expires": (now() + ttl_seconds) if ttl_seconds else None,
            "description": description,
            "usages": usages or ["signing", "authentication"],
            "groups": groups or ["system:bootstrappers:kubeadm:default-node-token"]}


def token_valid(record):
    return record is not None and (record["expires"] is None or record["expires"] > now())


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_detached(token_id, token_secret, payload):
    """Detached JWS (HS256) over payload keyed by the full token, as the bootstrap signer does."""
    header = _b64url(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = header + "." + _b64url(payload.encode())
    sig = hmac.new(f"{token_id}.{token_secret}".encode(), signing_input.encode(), hashlib.sha256).digest()
    return header + ".." + _b64url(sig)


def jws_verify(jws, token_id, token_secret, payload):
    return hmac.compare_digest(jws, jws_detached(token_id, token_secret, payload))
