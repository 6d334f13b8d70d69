"""Tests of the kubeha lab stand-ins, run on the host (as root, no lab machines):

    /usr/bin/python3 -m unittest discover -s tests/lab/standins -v

They start a real etcd cluster (Debian's etcd-server) on loopback addresses 127.0.0.11-13 with TLS and a
throwaway CA made with openssl, simulate nodes with KUBEHA_STANDIN_ROOT (one directory per node), and run the
stand-ins with KUBEHA_STANDIN_SERVICES=process so that the API servers and kubelets are background
processes tracked by PID. Every process started here is stopped by PID on every exit path (tearDown,
class cleanup, atexit, SIGTERM). Every wait is a bounded poll of a condition.
"""

import atexit
import http.server
import threading
import copy
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from standin_common import Etcd, kill_and_wait, spki_sha256, wait_for  # noqa: E402

FIXTURES = os.path.join(HERE, "fixtures")
TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "1b111cc9a09191143e4a5a0d17483a6044faddc71075d7daad7143a6fd52e542"
OTHER_KEY = "2" * 64
CP_IPS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
WK_IPS = ["127.0.0.21", "127.0.0.22"]

_OWNED_PIDS = set()  # etcd processes started by this module
_NODES = []  # simulated nodes, whose API servers and kubelets run in their own sessions


def _kill_owned():
    for node in _NODES:
        node.stop_units()
    for pid in list(_OWNED_PIDS):
        kill_and_wait(pid)
        _OWNED_PIDS.discard(pid)


atexit.register(_kill_owned)


def _on_sigterm(*_):
    # unittest would report SystemExit as a test error and go on, so clean up and leave right here.
    _kill_owned()
    os._exit(143)


signal.signal(signal.SIGTERM, _on_sigterm)


def need(program):
    # A missing tool fails the test rather than skipping it: a skip would let a broken CI install pass green.
    if shutil.which(program) is None:
        raise RuntimeError(f"{program} missing: apt-get install -y etcd-server etcd-client python3-yaml "
                           f"openssl curl")


def free_port(ips):
    """A TCP port free on every address in ips (bounded number of tries)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((ips[0], 0))
            port = s.getsockname()[1]
        try:
            for ip in ips[1:]:
                with socket.socket() as s:
                    s.bind((ip, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def sh(*argv, input=None):
    return subprocess.run(argv, input=input, capture_output=True, check=True, timeout=30).stdout


# ----------------------------------------------------------------------------------------- test PKI

class EtcdPki:
    """etcd CA, server/peer cert for the member addresses, a trusted client cert and a rogue one."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.ca_crt, self.ca_key = self.ca("etcd-ca")
        self.server_crt, self.server_key = self.leaf("server", "etcd-server", CP_IPS + ["127.0.0.1"],
                                                     "serverAuth,clientAuth")
        self.client_crt, self.client_key = self.leaf("apiserver-etcd-client", "kube-apiserver-etcd-client", [],
                                                     "clientAuth")
        rogue_crt, rogue_key = self.ca("rogue-ca")
        self.rogue_crt, self.rogue_key = self.leaf("rogue-client", "rogue", [], "clientAuth", rogue_crt, rogue_key)

    def ca(self, name):
        crt, key = os.path.join(self.d, name + ".crt"), os.path.join(self.d, name + ".key")
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name,
           "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature")
        return crt, key

    def leaf(self, name, cn, ips, eku, ca_crt=None, ca_key=None):
        crt, key = os.path.join(self.d, name + ".crt"), os.path.join(self.d, name + ".key")
        ext = os.path.join(self.d, name + ".ext")
        with open(ext, "w") as f:
            f.write("[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={eku}\n" + (f"subjectAltName={','.join('IP:' + i for i in ips)}\n" if ips else ""))
        sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
           "-out", crt + ".csr", "-subj", "/CN=" + cn)
        sh("openssl", "x509", "-req", "-in", crt + ".csr", "-CA", ca_crt or self.ca_crt, "-CAkey", ca_key or self.ca_key,
           "-set_serial", str(int(time.time() * 1000)), "-days", "2", "-extfile", ext, "-extensions", "v3", "-out", crt)
        return crt, key


class EtcdCluster:
    """A real etcd cluster, one member per address, TLS for clients and peers with client-cert auth."""

    def __init__(self, base, pki, ips):
        self.pki, self.ips = pki, ips
        self.client_port = free_port(ips)
        self.peer_port = free_port(ips)
        self.procs, self.logs = {}, {}
        initial = ",".join(f"m{i}=https://{ip}:{self.peer_port}" for i, ip in enumerate(ips))
        for i, ip in enumerate(ips):
            data = os.path.join(base, f"etcd-m{i}")
            log = open(os.path.join(base, f"etcd-m{i}.log"), "wb")
            p = subprocess.Popen([
                "etcd", f"--name=m{i}", f"--data-dir={data}",
                f"--listen-client-urls=https://{ip}:{self.client_port}",
                f"--advertise-client-urls=https://{ip}:{self.client_port}",
                f"--listen-peer-urls=https://{ip}:{self.peer_port}",
                f"--initial-advertise-peer-urls=https://{ip}:{self.peer_port}",
                f"--initial-cluster={initial}", "--initial-cluster-state=new",
                f"--initial-cluster-token=standin-test-{os.getpid()}",
                "--client-cert-auth", f"--trusted-ca-file={pki.ca_crt}", f"--cert-file={pki.server_crt}",
                f"--key-file={pki.server_key}", "--peer-client-cert-auth", f"--peer-trusted-ca-file={pki.ca_crt}",
                f"--peer-cert-file={pki.server_crt}", f"--peer-key-file={pki.server_key}",
                "--heartbeat-interval=50", "--election-timeout=500", "--logger=zap"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()  # etcd has its own descriptor now
            _OWNED_PIDS.add(p.pid)
            self.procs[ip], self.logs[ip] = p, log.name
        if not wait_for(lambda: all(self.healthy(ip) for ip in ips), 30, 0.2):
            self.stop()
            raise RuntimeError("test etcd cluster did not become healthy; logs: " + ", ".join(self.logs.values()))

    def endpoint(self, ip):
        return f"https://{ip}:{self.client_port}"

    def endpoints(self):
        return [self.endpoint(ip) for ip in self.ips]

    def healthy(self, ip):
        p = subprocess.run(["etcdctl", "--endpoints=" + self.endpoint(ip), "--cacert=" + self.pki.ca_crt,
                            "--cert=" + self.pki.client_crt, "--key=" + self.pki.client_key,
                            "--dial-timeout=1s", "--command-timeout=1s", "endpoint", "health"],
                           capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=10)
        return p.returncode == 0

    def clear(self):
        subprocess.run(["etcdctl", "--endpoints=" + ",".join(self.endpoints()), "--cacert=" + self.pki.ca_crt,
                        "--cert=" + self.pki.client_crt, "--key=" + self.pki.client_key, "del", "/kubeha-standin/",
                        "--prefix"], capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=10, check=True)

    def kill(self, ip):
        p = self.procs.pop(ip)
        p.kill()
        p.wait(timeout=10)
        _OWNED_PIDS.discard(p.pid)

    def stop(self):
        for ip in list(self.procs):
            self.kill(ip)


# ----------------------------------------------------------------------------------------- simulated nodes

class Node:
    """A simulated machine: its own root directory and loopback address."""

    def __init__(self, base, name, ip, pki=None, wait_seconds=20):
        self.name, self.ip = name, ip
        self.root = os.path.join(base, "nodes", name)
        _NODES.append(self)
        os.makedirs(self.root, exist_ok=True)
        self.env = dict(os.environ, KUBEHA_STANDIN_ROOT=self.root, KUBEHA_STANDIN_SERVICES="process",
                        KUBEHA_STANDIN_APISERVER_LOOPBACK="0", KUBEHA_STANDIN_KUBELET_INTERVAL="1",
                        KUBEHA_STANDIN_WAIT_SECONDS=str(wait_seconds))
        for var in ("KUBECONFIG", "ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"):
            self.env.pop(var, None)
        if pki:
            self.install_etcd_pki(pki)

    def path(self, p):
        return self.root + p

    def install_etcd_pki(self, pki, cert=None, key=None):
        """What kubeha puts on a control plane: /etc/kubeha/pki/etcd/{ca.crt, apiserver-etcd-client.*}."""
        d = self.path("/etc/kubeha/pki/etcd")
        os.makedirs(d, exist_ok=True)
        shutil.copy(pki.ca_crt, d + "/ca.crt")
        shutil.copy(cert or pki.client_crt, d + "/apiserver-etcd-client.crt")
        shutil.copy(key or pki.client_key, d + "/apiserver-etcd-client.key")

    def precreate_cluster_ca(self):
        """kubeha creates the cluster CA before init to render caCertHashes; returns the pin."""
        d = self.path("/etc/kubernetes/pki")
        os.makedirs(d, exist_ok=True)
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/ca.key", "-out", d + "/ca.crt",
           "-days", "3650", "-subj", "/CN=kubernetes", "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
        with open(d + "/ca.crt", "rb") as f:
            return spki_sha256(f.read())

    def run(self, tool, *args, input=None, timeout=120):
        return subprocess.run([sys.executable, os.path.join(HERE, tool), *args], input=input, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def write_config(self, text, name="kubeadm.yaml"):
        p = self.path("/etc/kubeha/" + name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text if isinstance(text, str) else yaml.safe_dump_all(text, sort_keys=False))
        return p

    def unit_pid(self, unit):
        try:
            return int(slurp(self.path(f"/run/kubeha-standin/{unit}.pid")))
        except (OSError, ValueError):
            return None

    def stop_units(self):
        """Kill the background API server / kubelet of this node by their recorded PIDs."""
        for unit in ("kubelet.service", "kube-apiserver-standin.service"):
            pid = self.unit_pid(unit)
            if pid and _is_standin(pid):
                kill_and_wait(pid)


def slurp(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _is_standin(pid):
    try:
        cmd = slurp(f"/proc/{pid}/cmdline", "rb")
    except OSError:
        return False
    return HERE.encode() in cmd


def load_fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def init_docs(node, etcd_endpoints, cp_endpoint, api_port, token=TOKEN, cert_key=CERT_KEY):
    """kubeha's rendered init config (fixtures/kubeha-init-cp-1.yaml) re-pointed at this test's nodes."""
    init, cc, kubelet = load_fixture("kubeha-init-cp-1.yaml")
    init["bootstrapTokens"][0]["token"] = token
    init["certificateKey"] = cert_key
    init["nodeRegistration"]["name"] = node.name
    init["nodeRegistration"]["kubeletExtraArgs"][0]["value"] = node.ip
    init["localAPIEndpoint"] = {"advertiseAddress": node.ip, "bindPort": api_port}
    cc["controlPlaneEndpoint"] = cp_endpoint
    cc["apiServer"]["certSANs"] = [cp_endpoint.split(":")[0]] + CP_IPS
    cc["etcd"]["external"]["endpoints"] = list(etcd_endpoints)
    return [init, cc, kubelet]


def join_docs(node, cp_endpoint, ca_hash, api_port=None, token=TOKEN, cert_key=CERT_KEY, zone="az-b"):
    """kubeha's rendered join config (control plane if api_port is given, else worker)."""
    (join,) = load_fixture("kubeha-join-cp-2.yaml" if api_port else "kubeha-join-wk-1.yaml")
    join["nodeRegistration"]["name"] = node.name
    join["nodeRegistration"]["kubeletExtraArgs"] = [
        {"name": "node-ip", "value": node.ip},
        {"name": "node-labels", "value": f"topology.kubernetes.io/zone={zone},topology.kubeha.io/rack=r1"}]
    bt = join["discovery"]["bootstrapToken"]
    bt.update(apiServerEndpoint=cp_endpoint, token=token, caCertHashes=[ca_hash])
    if api_port:
        join["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": api_port},
                                "certificateKey": cert_key}
    return [join]


def https_status(url, ca_file=None, timeout=3):
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return None, ""


class StandinTestCase(unittest.TestCase):
    def assertFails(self, proc, *needles):
        out = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0, f"expected a failure, got success:\n{out}")
        for n in needles:
            self.assertIn(n, out)

    def assertOk(self, proc):
        self.assertEqual(proc.returncode, 0, f"failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout


# ========================================================================================= tests

class TestVersions(StandinTestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="standin-ver-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.node = Node(self.tmp, "n", "127.0.0.11")

    def test_every_tool_says_it_is_a_stand_in(self):
        for tool in ("kubeadm", "kubelet", "kubectl", "kube-apiserver"):
            out = self.assertOk(self.node.run(tool, "--version")).strip()
            self.assertEqual(out, f"{tool} stand-in (kubeha lab, not Kubernetes) v1.36.4")
        self.assertEqual(self.assertOk(self.node.run("kubeadm", "version")).strip(),
                         "kubeadm stand-in (kubeha lab, not Kubernetes) v1.36.4")
        self.assertEqual(self.assertOk(self.node.run("kubeadm", "version", "-o", "short")).strip(), "v1.36.4")
        self.assertIn("stand-in", self.assertOk(self.node.run("kubectl", "version", "--client")))

    def test_version_file_overrides(self):
        os.makedirs(self.node.path("/etc/kubeha-standin"))
        with open(self.node.path("/etc/kubeha-standin/version"), "w") as f:
            f.write("v1.37.1\n")
        self.assertEqual(self.assertOk(self.node.run("kubeadm", "version", "-o", "short")).strip(), "v1.37.1")
        self.assertIn("v1.37.1", self.assertOk(self.node.run("kubelet", "--version")))

    def test_certificate_key_and_token_generation(self):
        key = self.assertOk(self.node.run("kubeadm", "certs", "certificate-key")).strip()
        self.assertRegex(key, r"^[0-9a-f]{64}$")
        self.assertRegex(self.assertOk(self.node.run("kubeadm", "token", "generate")).strip(),
                         r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


class TestConfigParsing(StandinTestCase):
    """Strict decoding: every contract break in the config file is rejected before anything is done."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="standin-parse-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.node = Node(self.tmp, "cp-1", "127.0.0.11")

    def init_fails(self, docs, *needles):
        p = self.node.run("kubeadm", "init", "--config", self.node.write_config(docs), "--upload-certs")
        self.assertFails(p, *needles)
        self.assertFalse(os.path.exists(self.node.path("/etc/kubernetes/admin.conf")))

    def join_fails(self, docs, *needles):
        self.assertFails(self.node.run("kubeadm", "join", "--config", self.node.write_config(docs)), *needles)

    def test_kubeha_rendered_configs_are_valid(self):
        for f in ("kubeha-init-cp-1.yaml", "kubeha-join-cp-2.yaml", "kubeha-join-wk-1.yaml"):
            self.assertOk(self.node.run("kubeadm", "config", "validate", "--config", os.path.join(FIXTURES, f)))

    def test_unknown_fields_at_any_level(self):
        cases = [((0, ["spec"]), "unknown field \"spec\""),
                 ((0, ["nodeRegistration", "nodeIP"]), "unknown field \"nodeRegistration.nodeIP\""),
                 ((1, ["etcd", "external", "certfile"]), "unknown field \"etcd.external.certfile\""),
                 ((1, ["networking", "podCIDR"]), "unknown field \"networking.podCIDR\""),
                 ((2, ["cgroupdriver"]), "unknown field \"cgroupdriver\"")]
        for (doc, path), needle in cases:
            docs = load_fixture("kubeha-init-cp-1.yaml")
            target = docs[doc]
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = "x"
            with self.subTest(needle):
                self.init_fails(docs, "strict decoding error", needle)
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["nodeRegistration"]["kubeletExtraArgs"][0]["val"] = "x"
        self.init_fails(docs, "unknown field \"nodeRegistration.kubeletExtraArgs[0].val\"")
        (join,) = load_fixture("kubeha-join-cp-2.yaml")
        join["controlPlane"]["certKey"] = CERT_KEY
        self.join_fails([join], "unknown field \"controlPlane.certKey\"")

    def test_fields_kubeha_does_not_use_are_accepted(self):
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["timeouts"] = {"controlPlaneComponentHealthCheck": "4m0s", "discovery": "5m"}
        docs[0]["nodeRegistration"]["imagePullSerial"] = True
        docs[1]["encryptionAlgorithm"] = "ECDSA-P256"
        docs[1]["dns"] = {"disabled": True}
        docs[1]["apiServer"]["extraArgs"] = [{"name": "audit-log-path", "value": "-"}]
        docs[2]["maxPods"] = 50
        docs.append({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                     "mode": "ipvs"})
        p = self.node.write_config(docs)
        self.assertOk(self.node.run("kubeadm", "config", "validate", "--config", p))

    def test_missing_required_fields(self):
        cases = [(0, ["nodeRegistration", "name"], "nodeRegistration.name"),
                 (1, ["controlPlaneEndpoint"], "controlPlaneEndpoint"),
                 (1, ["kubernetesVersion"], "kubernetesVersion"),
                 (1, ["etcd", "external", "caFile"], "etcd.external.caFile"),
                 (1, ["etcd", "external", "certFile"], "etcd.external.certFile"),
                 (1, ["etcd", "external", "keyFile"], "etcd.external.keyFile"),
                 (1, ["etcd", "external", "endpoints"], "etcd.external.endpoints"),
                 (0, ["certificateKey"], "certificateKey")]
        for doc, path, needle in cases:
            docs = load_fixture("kubeha-init-cp-1.yaml")
            target = docs[doc]
            for k in path[:-1]:
                target = target[k]
            del target[path[-1]]
            with self.subTest(needle):
                self.init_fails(docs, needle, "required")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        del docs[1]
        self.init_fails(docs, "ClusterConfiguration", "required")
        (join,) = load_fixture("kubeha-join-wk-1.yaml")
        del join["discovery"]["bootstrapToken"]["caCertHashes"]
        self.join_fails([join], "caCertHashes", "required")

    def test_bad_token_and_certificate_key_formats(self):
        for bad in ("abcdef0123456789abcdef", "ABCDEF.0123456789abcdef", "abcdef.0123456789abcde"):
            docs = load_fixture("kubeha-init-cp-1.yaml")
            docs[0]["bootstrapTokens"][0]["token"] = bad
            with self.subTest(bad):
                self.init_fails(docs, f"the bootstrap token \"{bad}\" was not of the form")
            (join,) = load_fixture("kubeha-join-wk-1.yaml")
            join["discovery"]["bootstrapToken"]["token"] = bad
            self.join_fails([join], "was not of the form")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["certificateKey"] = "abc123"
        self.init_fails(docs, "certificateKey must be 64 lowercase hex")
        (join,) = load_fixture("kubeha-join-cp-2.yaml")
        join["controlPlane"]["certificateKey"] = "Z" * 64
        self.join_fails([join], "certificateKey must be 64 lowercase hex")
        (join,) = load_fixture("kubeha-join-wk-1.yaml")
        join["discovery"]["bootstrapToken"]["caCertHashes"] = ["sha1:abcd"]
        self.join_fails([join], "is not sha256:<64 hex>")

    def test_wrong_versions_types_and_duplicates(self):
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["apiVersion"] = "kubeadm.k8s.io/v1beta3"
        self.init_fails(docs, "v1beta3 and older are not accepted")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["nodeRegistration"]["kubeletExtraArgs"] = {"node-ip": "1.2.3.4"}  # v1beta3 style map
        self.init_fails(docs, "nodeRegistration.kubeletExtraArgs", "(a list)")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["localAPIEndpoint"]["bindPort"] = "6443"
        self.init_fails(docs, "localAPIEndpoint.bindPort", "int32")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["bootstrapTokens"][0]["ttl"] = "1 day"
        self.init_fails(docs, "invalid duration")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[1]["etcd"] = {"local": {"dataDir": "/var/lib/etcd"}}
        self.init_fails(docs, "etcd.local (stacked etcd) is not supported")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs.append(copy.deepcopy(docs[1]))
        self.init_fails(docs, "more than one ClusterConfiguration")
        docs = load_fixture("kubeha-init-cp-1.yaml")
        docs[0]["nodeRegistration"]["kubeletExtraArgs"][1]["value"] = "node-role.kubernetes.io/worker="
        self.init_fails(docs, "NodeRestriction")
        with open(os.path.join(FIXTURES, "kubeha-init-cp-1.yaml")) as f:
            text = f.read()
        text = text.replace(
            "kubernetesVersion: \"v1.36.4\"", "kubernetesVersion: \"v1.36.4\"\nkubernetesVersion: \"v1.36.5\"")
        p = self.node.write_config(text)
        self.assertFails(self.node.run("kubeadm", "init", "--config", p, "--upload-certs"),
                         "duplicate field \"kubernetesVersion\"")

    def test_join_before_init(self):
        """Nothing serves the endpoint yet: discovery fails and says why."""
        port = free_port(["127.0.0.11"])
        (join,) = load_fixture("kubeha-join-wk-1.yaml")
        join["discovery"]["bootstrapToken"]["apiServerEndpoint"] = f"127.0.0.11:{port}"
        self.join_fails([join], "cannot fetch cluster-info", "join before init")
        self.assertFalse(os.path.exists(self.node.path("/etc/kubernetes/kubelet.conf")))


class ClusterFixture(StandinTestCase):
    """A 3-member etcd cluster and simulated nodes; one fresh set per test class."""

    @classmethod
    def setUpClass(cls):
        need("etcd")
        need("etcdctl")
        need("openssl")
        cls.tmp = tempfile.mkdtemp(prefix="standin-cluster-")
        if not os.environ.get("KUBEHA_STANDIN_TEST_KEEP"):  # keep logs and roots for debugging
            cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.pki = EtcdPki(os.path.join(cls.tmp, "etcd-pki"))
        cls.etcd = EtcdCluster(cls.tmp, cls.pki, CP_IPS)
        cls.addClassCleanup(cls.etcd.stop)
        cls.api_port = free_port(CP_IPS)
        cls.endpoint = f"{CP_IPS[0]}:{cls.api_port}"
        cls.nodes = {}
        cls.addClassCleanup(lambda: [n.stop_units() for n in cls.nodes.values()])

    @classmethod
    def node(cls, name, ip, wait_seconds=20, etcd_pki=True):
        if name not in cls.nodes:
            cls.nodes[name] = Node(cls.tmp, name, ip, cls.pki if etcd_pki else None, wait_seconds)
        return cls.nodes[name]

    def admin_kubectl(self, *args, node="cp-1"):
        return self.nodes[node].run("kubectl", *args)

    def nodes_json(self):
        return json.loads(self.assertOk(self.admin_kubectl("get", "nodes", "-o", "json")))["items"]


class TestInitRejections(ClusterFixture):
    """init refuses broken etcd endpoints, untrusted etcd certificates and endpoints with no API server."""

    def setUp(self):
        self.cp1 = self.node("cp-1", CP_IPS[0], wait_seconds=3)
        if not os.path.exists(self.cp1.path("/etc/kubernetes/pki/ca.key")):
            self.cp1.precreate_cluster_ca()

    def tearDown(self):
        self.cp1.run("kubeadm", "reset", "-f")
        self.cp1.stop_units()
        self.etcd.clear()  # kubeadm reset leaves an external etcd alone; the next test starts clean
        os.makedirs(self.cp1.path("/etc/kubernetes/pki"), exist_ok=True)

    def init(self, docs):
        return self.cp1.run("kubeadm", "init", "--config", self.cp1.write_config(docs), "--upload-certs")

    def test_unhealthy_etcd_endpoint_is_named(self):
        dead = f"https://127.0.0.14:{free_port(['127.0.0.14'])}"
        docs = init_docs(self.cp1, self.etcd.endpoints() + [dead], self.endpoint, self.api_port)
        self.assertFails(self.init(docs), f"external etcd endpoint {dead} is not healthy")
        self.assertFalse(os.path.exists(self.cp1.path("/etc/kubernetes/admin.conf")))

    def test_etcd_client_cert_not_trusted_by_etcd_ca(self):
        self.cp1.install_etcd_pki(self.pki, self.pki.rogue_crt, self.pki.rogue_key)
        self.addCleanup(self.cp1.install_etcd_pki, self.pki)
        docs = init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)
        self.assertFails(self.init(docs), f"external etcd endpoint {self.etcd.endpoint(CP_IPS[0])} is not healthy",
                         "TLS")

    def test_etcd_client_cert_not_matching_key(self):
        self.cp1.install_etcd_pki(self.pki, self.pki.client_crt, self.pki.rogue_key)
        self.addCleanup(self.cp1.install_etcd_pki, self.pki)
        docs = init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)
        self.assertFails(self.init(docs), "does not match key")

    def test_no_etcd_member_on_the_control_plane(self):
        docs = init_docs(self.cp1, self.etcd.endpoints()[1:], self.endpoint, self.api_port)
        self.assertFails(self.init(docs), "is on this control plane's advertise address 127.0.0.11")

    def test_endpoint_that_reaches_no_serving_api_server(self):
        """The local API server comes up, but the control-plane endpoint (VIP) leads nowhere."""
        nowhere = f"127.0.0.100:{free_port(['127.0.0.100'])}"
        docs = init_docs(self.cp1, self.etcd.endpoints(), nowhere, self.api_port)
        self.assertFails(self.init(docs), f"control plane endpoint https://{nowhere} does not reach a serving "
                                          f"API server")

    def test_endpoint_serving_another_clusters_api(self):
        """An endpoint that answers 200 but with a certificate of another CA is not this control plane."""
        port = free_port([CP_IPS[1]])
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.server_crt, self.pki.server_key)  # signed by the etcd CA, not the cluster CA

        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer((CP_IPS[1], port), Ok)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.addCleanup(httpd.server_close)
        self.addCleanup(httpd.shutdown)
        docs = init_docs(self.cp1, self.etcd.endpoints(), f"{CP_IPS[1]}:{port}", self.api_port)
        self.assertFails(self.init(docs), "does not reach a serving API server", "CERTIFICATE_VERIFY_FAILED")


class TestCluster(ClusterFixture):
    """The happy path and the join-time rejections, in order (test_NN_ share one cluster)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cp1 = cls.node("cp-1", CP_IPS[0])
        cls.ca_hash = cls.cp1.precreate_cluster_ca()

    def join(self, node, docs):
        return node.run("kubeadm", "join", "--config", node.write_config(docs))

    def test_01_init(self):
        out = self.assertOk(self.cp1.run("kubeadm", "init", "--config", self.cp1.write_config(
            init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)), "--upload-certs"))
        self.assertIn("Using the existing \"kubernetes\" CA", out)
        self.assertIn(self.ca_hash, out)
        ca = self.cp1.path("/etc/kubernetes/pki/ca.crt")
        self.assertEqual(https_status(f"https://{self.endpoint}/readyz", ca), (200, "ok"))
        subject = sh("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in",
                     self.cp1.path("/etc/kubernetes/pki/apiserver.crt")).decode()
        self.assertIn("kube-apiserver", subject)
        admin = yaml.safe_load(slurp(self.cp1.path("/etc/kubernetes/admin.conf")))
        self.assertEqual(admin["clusters"][0]["cluster"]["server"], f"https://{self.endpoint}")
        import base64
        cert = base64.b64decode(admin["users"][0]["user"]["client-certificate-data"])
        subj = sh("openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253", input=cert).decode()
        self.assertIn("CN=kubernetes-admin", subj)
        self.assertIn("O=system:masters", subj)
        for f in ("sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key"):
            self.assertTrue(os.path.exists(self.cp1.path("/etc/kubernetes/pki/" + f)), f)
        self.assertIsNotNone(self.cp1.unit_pid("kubelet.service"))
        # state is in etcd under /kubeha-standin/
        keys = subprocess.run(["etcdctl", "--endpoints=" + self.etcd.endpoint(CP_IPS[1]), "--cacert=" + self.pki.ca_crt,
                               "--cert=" + self.pki.client_crt, "--key=" + self.pki.client_key, "get",
                               "/kubeha-standin/", "--prefix", "--keys-only"], capture_output=True, text=True,
                              env=dict(os.environ, ETCDCTL_API="3"), timeout=10).stdout.split()
        for k in ("/kubeha-standin/cluster-info", "/kubeha-standin/cluster-config", "/kubeha-standin/kubeadm-certs",
                  "/kubeha-standin/nodes/cp-1", "/kubeha-standin/bootstrap-tokens/abcdef"):
            self.assertIn(k, keys)

    def test_02_init_twice_is_refused(self):
        docs = init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)
        self.assertFails(self.cp1.run("kubeadm", "init", "--config", self.cp1.write_config(docs, "again.yaml"),
                                      "--upload-certs"), "already initialised")

    def test_03_init_on_another_node_with_another_ca_is_refused(self):
        other = self.node("cp-x", CP_IPS[1])
        docs = init_docs(other, self.etcd.endpoints(), self.endpoint, self.api_port)
        self.assertFails(other.run("kubeadm", "init", "--config", other.write_config(docs), "--upload-certs"),
                         "etcd already holds a cluster with a different CA")
        other.stop_units()
        shutil.rmtree(other.root)
        del self.nodes["cp-x"]

    def test_04_join_rejects_token_not_issued(self):
        cp2 = self.node("cp-2", CP_IPS[1])
        p = self.join(cp2, join_docs(cp2, self.endpoint, self.ca_hash, self.api_port, token="zzzzzz.0123456789abcdef"))
        self.assertFails(p, "no JWS signed token", "\"zzzzzz\"", "not issued")
        p = self.join(cp2, join_docs(cp2, self.endpoint, self.ca_hash, self.api_port, token="abcdef.aaaaaaaaaaaaaaaa"))
        self.assertFails(p, "token secret does not match")
        self.assertFalse(os.path.exists(cp2.path("/etc/kubernetes/pki/ca.key")))

    def test_05_join_rejects_discovery_hash_mismatch(self):
        cp2 = self.node("cp-2", CP_IPS[1])
        wrong = "sha256:" + "0" * 64
        p = self.join(cp2, join_docs(cp2, self.endpoint, wrong, self.api_port))
        self.assertFails(p, "none of the public keys", self.ca_hash, wrong)
        self.assertFalse(os.path.exists(cp2.path("/etc/kubernetes/pki/ca.key")))

    def test_06_join_rejects_wrong_certificate_key(self):
        cp2 = self.node("cp-2", CP_IPS[1])
        p = self.join(cp2, join_docs(cp2, self.endpoint, self.ca_hash, self.api_port, cert_key=OTHER_KEY))
        self.assertFails(p, "certificate key does not decrypt the uploaded certificates")
        self.assertFalse(os.path.exists(cp2.path("/etc/kubernetes/pki/ca.key")))

    def test_07_join_control_plane_rejects_untrusted_etcd_cert(self):
        cp2 = self.node("cp-2", CP_IPS[1])
        cp2.install_etcd_pki(self.pki, self.pki.rogue_crt, self.pki.rogue_key)
        try:
            p = self.join(cp2, join_docs(cp2, self.endpoint, self.ca_hash, self.api_port))
            self.assertFails(p, "external etcd endpoint", "is not healthy")
        finally:
            cp2.install_etcd_pki(self.pki)
            cp2.run("kubeadm", "reset", "-f")

    def test_08_join_control_plane(self):
        cp2 = self.node("cp-2", CP_IPS[1])
        self.assertOk(self.join(cp2, join_docs(cp2, self.endpoint, self.ca_hash, self.api_port)))
        ca = self.cp1.path("/etc/kubernetes/pki/ca.crt")
        self.assertEqual(https_status(f"https://{CP_IPS[1]}:{self.api_port}/readyz", ca), (200, "ok"))
        self.assertEqual(slurp(cp2.path("/etc/kubernetes/pki/ca.crt")), slurp(ca))
        # cp-2's own API server serves the same cluster (state is in etcd)
        p = cp2.run("kubectl", "get", "--raw", "/api/v1/nodes/cp-2")
        self.assertEqual(json.loads(self.assertOk(p))["metadata"]["name"], "cp-2")

    def test_09_join_workers(self):
        wk1 = self.node("wk-1", WK_IPS[0], etcd_pki=False)
        # kubeha passes the config on stdin so that the token never lands on the worker's disk
        text = yaml.safe_dump_all(join_docs(wk1, self.endpoint, self.ca_hash, zone="az-a"), sort_keys=False)
        self.assertOk(wk1.run("kubeadm", "join", "--config", "/dev/stdin", input=text))
        self.assertTrue(os.path.exists(wk1.path("/etc/kubernetes/kubelet.conf")))
        self.assertFalse(os.path.exists(wk1.path("/etc/kubernetes/pki/ca.key")))
        self.assertFails(self.join(wk1, join_docs(wk1, self.endpoint, self.ca_hash)), "already exists")
        # the printed join command works too (flag form)
        cmd = self.assertOk(self.cp1.run("kubeadm", "token", "create", "--print-join-command")).split()
        self.assertEqual(cmd[:3], ["kubeadm", "join", self.endpoint])
        self.assertIn(self.ca_hash, cmd)
        wk2 = self.node("wk-2", WK_IPS[1], etcd_pki=False)
        self.assertOk(wk2.run("kubeadm", *cmd[1:], "--node-name", "wk-2"))

    def test_10_get_nodes_shows_all_with_labels_taints_and_ready(self):
        def all_ready():
            items = self.nodes_json()
            ok = len(items) == 4 and all(
                c["status"] == "True" for n in items for c in n["status"]["conditions"] if c["type"] == "Ready")
            return items if ok else None
        items = wait_for(all_ready, 20, 0.5)
        self.assertTrue(items, self.assertOk(self.admin_kubectl("get", "nodes")))
        by = {n["metadata"]["name"]: n for n in items}
        self.assertEqual(sorted(by), ["cp-1", "cp-2", "wk-1", "wk-2"])
        self.assertEqual(by["cp-1"]["metadata"]["labels"]["topology.kubernetes.io/zone"], "az-a")
        self.assertEqual(by["cp-2"]["metadata"]["labels"]["topology.kubernetes.io/zone"], "az-b")
        self.assertEqual(by["wk-1"]["metadata"]["labels"]["topology.kubeha.io/rack"], "r1")
        for cp in ("cp-1", "cp-2"):
            self.assertIn("node-role.kubernetes.io/control-plane", by[cp]["metadata"]["labels"])
            self.assertEqual(by[cp]["spec"]["taints"],
                             [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
        self.assertNotIn("node-role.kubernetes.io/control-plane", by["wk-1"]["metadata"]["labels"])
        self.assertFalse(by["wk-1"]["spec"].get("taints"))
        table = self.assertOk(self.admin_kubectl("get", "nodes"))
        self.assertRegex(table, r"cp-1\s+Ready\s+control-plane")
        self.assertRegex(table, r"wk-1\s+Ready\s+<none>")

    def test_11_kubectl_label_apply_drain_delete(self):
        self.assertOk(self.admin_kubectl("label", "node", "wk-1", "node-role.kubernetes.io/worker="))
        self.assertFails(self.admin_kubectl("label", "node", "wk-1", "topology.kubernetes.io/zone=az-c"),
                         "--overwrite is false")
        self.assertOk(self.admin_kubectl("label", "node", "wk-1", "topology.kubernetes.io/zone=az-c", "--overwrite"))
        labels = json.loads(self.assertOk(self.admin_kubectl("get", "node", "wk-1", "-o", "json")))["metadata"]["labels"]
        self.assertEqual(labels["topology.kubernetes.io/zone"], "az-c")
        self.assertIn("node-role.kubernetes.io/worker", labels)
        out = self.assertOk(self.admin_kubectl("apply", "-f", os.path.join(FIXTURES, "kubeha-flannel.yaml")))
        self.assertIn("daemonset/kube-flannel-ds created", out)
        self.assertIn("configured", self.assertOk(self.admin_kubectl("apply", "-f", os.path.join(
            FIXTURES, "kubeha-flannel.yaml"))))
        bad = self.cp1.write_config("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: 1}\ndata: {}\n",
                                    "bad.yaml")
        self.assertFails(self.admin_kubectl("apply", "-f", bad), "duplicate field \"data\"")
        self.assertOk(self.admin_kubectl("drain", "wk-2", "--ignore-daemonsets", "--delete-emptydir-data", "--force"))
        self.assertRegex(self.assertOk(self.admin_kubectl("get", "nodes")), r"wk-2\s+Ready,SchedulingDisabled")
        self.assertEqual(self.assertOk(self.admin_kubectl("get", "--raw", "/readyz")).strip(), "ok")
        self.assertIn("Server Version: v1.36.4", self.assertOk(self.admin_kubectl("version")))

    def test_12_api_rejects_anonymous_and_other_identities(self):
        ca = self.cp1.path("/etc/kubernetes/pki/ca.crt")
        self.assertEqual(https_status(f"https://{self.endpoint}/api/v1/nodes", ca)[0], 401)
        self.assertEqual(https_status(f"https://{self.endpoint}/healthz", ca), (200, "ok"))
        self.assertEqual(https_status(f"https://{self.endpoint}/api/v1/namespaces/kube-public/configmaps/"
                                      f"cluster-info", ca)[0], 200)
        wk1 = self.nodes["wk-1"]
        kubelet_conf = wk1.path("/etc/kubernetes/kubelet.conf")
        p = wk1.run("kubectl", "--kubeconfig", "/etc/kubernetes/kubelet.conf", "label", "node", "wk-2", "a=b")
        self.assertFails(p, "403")
        self.assertTrue(os.path.exists(kubelet_conf))
        p = wk1.run("kubectl", "--kubeconfig", "/etc/kubernetes/kubelet.conf", "get", "--raw", "/api/v1/nodes/wk-1")
        self.assertOk(p)
        p = wk1.run("kubectl", "--kubeconfig", "/etc/kubernetes/kubelet.conf", "get", "--raw", "/api/v1/nodes/cp-1")
        self.assertFails(p, "cannot get node cp-1")
        # a bearer token that was never issued is refused outright
        req = urllib.request.Request(f"https://{self.endpoint}/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
                                     headers={"Authorization": "Bearer zzzzzz.0123456789abcdef"})
        try:
            urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=3)
            self.fail("unissued bearer token accepted")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 401)

    def test_13_upload_certs_new_key_and_expired_token(self):
        cp3 = self.node("cp-3", CP_IPS[2])
        new_key = self.assertOk(self.cp1.run("kubeadm", "certs", "certificate-key")).strip()
        out = self.assertOk(self.cp1.run("kubeadm", "init", "phase", "upload-certs", "--upload-certs",
                                         "--certificate-key", new_key))
        self.assertEqual(out.strip().splitlines()[-1], new_key)
        p = self.join(cp3, join_docs(cp3, self.endpoint, self.ca_hash, self.api_port, cert_key=CERT_KEY))
        self.assertFails(p, "certificate key does not decrypt")
        # a token that expires: discovery stops finding its signature once the TTL has passed
        self.assertOk(self.cp1.run("kubeadm", "token", "create", "short0.0123456789abcdef", "--ttl", "1s"))
        gone = wait_for(lambda: "jws-kubeconfig-short0" not in https_status(
            f"https://{self.endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info")[1], 10, 0.2)
        self.assertTrue(gone)
        p = self.join(cp3, join_docs(cp3, self.endpoint, self.ca_hash, self.api_port, token="short0.0123456789abcdef",
                                     cert_key=new_key))
        self.assertFails(p, "not issued", "expired")
        # the uploaded certificates expire after 2 h: stand in for the clock by back-dating them in etcd
        etcd = Etcd(self.etcd.endpoints(), self.pki.ca_crt, self.pki.client_crt, self.pki.client_key)
        etcd.update("kubeadm-certs", lambda blob: dict(blob, expires=time.time() - 1))
        p = self.join(cp3, join_docs(cp3, self.endpoint, self.ca_hash, self.api_port, cert_key=new_key))
        self.assertFails(p, "kubeadm-certs", "expired", "upload-certs")
        self.assertOk(self.cp1.run("kubeadm", "init", "phase", "upload-certs", "--upload-certs",
                                   "--certificate-key", new_key))
        self.assertOk(self.join(cp3, join_docs(cp3, self.endpoint, self.ca_hash, self.api_port, cert_key=new_key,
                                               zone="az-c")))
        # kubeha's way: re-upload with its rendered config, which reuses the config's certificateKey
        out = self.assertOk(self.cp1.run("kubeadm", "init", "phase", "upload-certs", "--upload-certs", "--config",
                                         self.cp1.path("/etc/kubeha/kubeadm.yaml")))
        self.assertEqual(out.strip().splitlines()[-1], CERT_KEY)

    def test_13b_upload_config_replaces_the_cluster_configuration(self):
        etcd = Etcd(self.etcd.endpoints(), self.pki.ca_crt, self.pki.client_crt, self.pki.client_key)
        init, cc, kubelet = init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)
        cc["apiServer"]["certSANs"] = cc["apiServer"]["certSANs"] + ["replaced-cp.example"]
        self.assertOk(self.cp1.run("kubeadm", "init", "phase", "upload-config", "kubeadm", "--config",
                                   self.cp1.write_config([init, cc, kubelet], "upload.yaml")))
        self.assertIn("replaced-cp.example", etcd.get("cluster-config")["apiServer"]["certSANs"])
        # checked like init: an etcd endpoint that does not answer is refused and nothing changes
        cc["etcd"]["external"]["endpoints"] = list(self.etcd.endpoints()) + ["https://127.0.0.99:2379"]
        cc["apiServer"]["certSANs"] = ["never-stored.example"]
        self.assertFails(self.cp1.run("kubeadm", "init", "phase", "upload-config", "kubeadm", "--config",
                                      self.cp1.write_config([init, cc, kubelet], "upload.yaml")), "127.0.0.99")
        self.assertNotIn("never-stored.example", etcd.get("cluster-config")["apiServer"]["certSANs"])

    def test_14_readyz_fails_when_local_etcd_dies(self):
        ca = self.cp1.path("/etc/kubernetes/pki/ca.crt")
        cp3_url = f"https://{CP_IPS[2]}:{self.api_port}"
        self.assertEqual(https_status(cp3_url + "/readyz", ca), (200, "ok"))
        self.etcd.kill(CP_IPS[2])
        for path in ("/readyz", "/healthz", "/livez"):
            status = wait_for(lambda: https_status(cp3_url + path, ca)[0] == 500, 10, 0.2)
            self.assertTrue(status, f"{path} of cp-3 did not turn 500 after its etcd died")
        self.assertIn("local etcd member", https_status(cp3_url + "/readyz", ca)[1])
        # the others keep quorum (2 of 3) and stay ready
        self.assertEqual(https_status(f"https://{self.endpoint}/readyz", ca), (200, "ok"))
        self.assertEqual(https_status(f"https://{CP_IPS[1]}:{self.api_port}/readyz", ca), (200, "ok"))

    def test_15_reset_and_delete(self):
        wk1 = self.nodes["wk-1"]
        pid = wk1.unit_pid("kubelet.service")
        self.assertOk(wk1.run("kubeadm", "reset", "-f"))  # wk-1 has no admin.conf: its node object stays
        self.assertFalse(os.path.exists(wk1.path("/etc/kubernetes")))
        self.assertTrue(wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, 0.1))
        # a Node whose kubelet stopped posting turns NotReady after the 40 s grace (back-dated here)
        etcd = Etcd(self.etcd.endpoints()[:2], self.pki.ca_crt, self.pki.client_crt, self.pki.client_key)

        def backdate(node):
            for c in node["status"]["conditions"]:
                c["lastHeartbeatEpoch"] = time.time() - 60
            return node
        etcd.update("nodes/wk-1", backdate)
        self.assertRegex(self.assertOk(self.admin_kubectl("get", "nodes")), r"wk-1\s+NotReady")
        self.assertOk(self.admin_kubectl("delete", "node", "wk-1"))
        self.assertFails(self.admin_kubectl("get", "node", "wk-1"), "not found")
        cp2 = self.nodes["cp-2"]
        self.assertOk(cp2.run("kubeadm", "reset", "-f"))  # a control plane deletes its own node object
        names = [n["metadata"]["name"] for n in self.nodes_json()]
        self.assertNotIn("cp-2", names)
        self.assertIsNone(https_status(f"https://{CP_IPS[1]}:{self.api_port}/readyz")[0])


class HealthCheckedProxy:
    """HAProxy of the lab in miniature: TCP forwarding (TLS ends at the API servers) to the backends
    whose HTTPS GET /healthz answers 200, checked without verifying, like `check ... verify none`."""

    def __init__(self, ip, port, backends):
        self.backends, self.healthy = backends, set()
        self.stop = threading.Event()
        self.sock = socket.create_server((ip, port))
        self.sock.settimeout(0.2)
        self.threads = [threading.Thread(target=self._check_loop, daemon=True),
                        threading.Thread(target=self._accept_loop, daemon=True)]
        for t in self.threads:
            t.start()

    def _check_loop(self):
        while not self.stop.is_set():
            for b in self.backends:
                status, _ = https_status(f"https://{b[0]}:{b[1]}/healthz", timeout=1)
                (self.healthy.add if status == 200 else self.healthy.discard)(b)
            self.stop.wait(0.3)

    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn):
        up = sorted(self.healthy)
        try:
            if not up:
                raise OSError("no healthy backend")  # like HAProxy with all servers down: close
            upstream = socket.create_connection(up[int(time.monotonic() * 1000) % len(up)], timeout=2)
        except OSError:
            conn.close()
            return
        for s in (conn, upstream):
            s.settimeout(30)
        back = threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True)
        back.start()
        self._pipe(conn, upstream)
        back.join(30)
        conn.close()
        upstream.close()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(5)


class TestThroughVip(ClusterFixture):
    """controlPlaneEndpoint is a health-checked proxy in front of all API servers, as VIP + HAProxy are in
    the lab: init and joins go through it, and it drops an API server whose local etcd dies."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        vip = "127.0.0.100"
        cls.proxy = HealthCheckedProxy(vip, free_port([vip]), [(ip, cls.api_port) for ip in CP_IPS])
        cls.addClassCleanup(cls.proxy.close)
        cls.endpoint = f"{vip}:{cls.proxy.sock.getsockname()[1]}"
        cls.cp1 = cls.node("cp-1", CP_IPS[0])

    def test_01_init_and_joins_through_the_vip(self):
        """This time init creates the CA, and the pin is read from cp-1 afterwards (kubeha's other option)."""
        out = self.assertOk(self.cp1.run("kubeadm", "init", "--config", self.cp1.write_config(
            init_docs(self.cp1, self.etcd.endpoints(), self.endpoint, self.api_port)), "--upload-certs"))
        self.assertIn("Generated \"kubernetes\" CA", out)
        ca_hash = spki_sha256(slurp(self.cp1.path("/etc/kubernetes/pki/ca.crt"), "rb"))
        cp2 = self.node("cp-2", CP_IPS[1])
        self.assertOk(cp2.run("kubeadm", "join", "--config", cp2.write_config(
            join_docs(cp2, self.endpoint, ca_hash, self.api_port))))
        wk1 = self.node("wk-1", WK_IPS[0], etcd_pki=False)
        self.assertOk(wk1.run("kubeadm", "join", "--config", wk1.write_config(
            join_docs(wk1, self.endpoint, ca_hash))))
        self.assertEqual(sorted(n["metadata"]["name"] for n in self.nodes_json()), ["cp-1", "cp-2", "wk-1"])

    def test_02_vip_keeps_serving_when_one_control_plane_loses_its_etcd(self):
        cp1_backend, cp2_backend = (CP_IPS[0], self.api_port), (CP_IPS[1], self.api_port)
        self.assertTrue(wait_for(lambda: {cp1_backend, cp2_backend} <= self.proxy.healthy, 10, 0.1))
        self.etcd.kill(CP_IPS[0])
        self.assertTrue(wait_for(lambda: cp1_backend not in self.proxy.healthy, 10, 0.1),
                        "the proxy's /healthz check did not drop cp-1 after its etcd died")
        self.assertEqual(https_status(f"https://{CP_IPS[0]}:{self.api_port}/healthz")[0], 500)
        for _ in range(5):  # every request now lands on cp-2, which still has etcd quorum (2 of 3)
            self.assertEqual(len(self.nodes_json()), 3)


class TestInstall(StandinTestCase):
    def test_install_sh_puts_tools_and_units_in_place(self):
        dest = tempfile.mkdtemp(prefix="standin-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        self.assertOk(subprocess.run(["sh", os.path.join(HERE, "install.sh"), dest], capture_output=True,
                                     text=True, timeout=30))
        for tool in ("kubeadm", "kubelet", "kubectl", "kube-apiserver"):
            path = os.path.join(dest, "usr/bin", tool)
            self.assertTrue(os.access(path, os.X_OK), path)
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
            self.assertIn("stand-in (kubeha lab, not Kubernetes)", out)
        units = os.path.join(dest, "etc/systemd/system")
        self.assertEqual(sorted(os.listdir(units)), ["kube-apiserver-standin.service", "kubelet.service"])
        self.assertFalse(os.path.exists(os.path.join(units, "multi-user.target.wants")), "units must not be enabled")
        # The process seam used by the tests runs what the units run.
        api = slurp(os.path.join(units, "kube-apiserver-standin.service"))
        self.assertIn("EnvironmentFile=/etc/kubernetes/standin/kube-apiserver.env", api)
        self.assertIn("ExecStart=/usr/bin/kube-apiserver $KUBE_APISERVER_ARGS", api)
        kubelet = slurp(os.path.join(units, "kubelet.service"))
        self.assertIn("EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env", kubelet)
        self.assertIn("ExecStart=/usr/bin/kubelet --kubeconfig=/etc/kubernetes/kubelet.conf "
                      "--config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS", kubelet)
        self.assertFails(subprocess.run(["sh", os.path.join(HERE, "install.sh")], capture_output=True, text=True,
                                        timeout=30), "usage")


if __name__ == "__main__":
    unittest.main()
