"""Shared code of the kubeha lab stand-ins for kubeadm, kubelet, kubectl and kube-apiserver.

These programs are NOT Kubernetes. They exist because no Kubernetes binaries can be obtained in the
kubeha lab. They implement the part of the kubeadm/kubectl/API contract that kubeha relies on, and they
are strict on purpose: a config or sequence that real kubeadm would reject (or that would break a real
cluster) must fail here too, with a message that names what is wrong.

Environment overrides (used by the tests, never needed in the lab):
  KUBEHA_STANDIN_ROOT      prefix for every absolute path read or written (simulate several nodes on one host)
  KUBEHA_STANDIN_SERVICES  "systemd" (default: systemctl start/stop units) or "process" (background
                           processes tracked by PID files under $ROOT/run/kubeha-standin/)
  KUBEHA_STANDIN_WAIT_SECONDS  bound of the wait for /readyz through the control-plane endpoint (default 60)
  KUBEHA_STANDIN_APISERVER_LOOPBACK  "0" stops the API server from also listening on 127.0.0.1
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:  # say what to install instead of a traceback
    sys.stderr.write("error: the kubeha lab stand-ins need python3-yaml: apt-get install -y python3-yaml\n")
    sys.exit(1)

DEFAULT_VERSION = "v1.36.4"
ETCD_PREFIX = "/kubeha-standin/"
CERT_KEY_TTL_SECONDS = 2 * 3600  # kubeadm's DefaultCertTokenDuration
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
CERT_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
BIN_DIR = os.path.dirname(os.path.abspath(__file__))


class StandinError(Exception):
    """An error that the stand-in reports on stderr before exiting 1."""


def die_on_error(main):
    """Run main(argv) and turn StandinError into 'error: ...' + exit 1, like the real tools."""
    try:
        rc = main(sys.argv[1:])
    except StandinError as e:
        print(f"error: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        rc = 130
    sys.exit(rc or 0)


# ---------------------------------------------------------------- paths, version, time

def root_path(path):
    """Map an absolute node path to the (possibly overridden) root file system."""
    root = os.environ.get("KUBEHA_STANDIN_ROOT", "")
    if not path.startswith("/"):
        raise ValueError(f"stand-in paths must be absolute: {path}")
    return root.rstrip("/") + path if root else path


def k8s_version():
    p = root_path("/etc/kubeha-standin/version")
    if os.path.exists(p):
        v = open(p).read().strip()
        if v:
            return v
    return DEFAULT_VERSION


def version_banner(tool):
    return f"{tool} stand-in (kubeha lab, not Kubernetes) {k8s_version()}"


def now():
    return time.time()


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(text):
    """Parse a Go duration ("24h", "1h30m", "0"); returns seconds or raises ValueError."""
    if text in ("0", "0s"):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"time: invalid duration \"{text}\"")
    return total


def read_file(path):
    with open(root_path(path), "rb") as f:
        return f.read()


def write_file(path, data, mode=0o644):
    """Write atomically (tmp + rename) so a crash never leaves half a key behind."""
    p = root_path(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    tmp = p + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, p)


def exists(path):
    return os.path.exists(root_path(path))


# ---------------------------------------------------------------- strict YAML

class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (Kubernetes' strict decoding does too)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"strict decoding error: duplicate field \"{key}\"", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_documents(text, source):
    """All non-empty documents of a multi-document YAML file, duplicate keys rejected."""
    try:
        docs = [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        raise StandinError(f"{source}: {e}")
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise StandinError(f"{source}: document {i + 1} is not a mapping")
    return docs


def dump_yaml(obj):
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


# ---------------------------------------------------------------- openssl helpers

def run(argv, input=None, check=True, timeout=30):
    """Run a helper program (openssl, etcdctl, systemctl) with a time bound."""
    try:
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StandinError(f"{argv[0]} timed out after {timeout}s")
    except FileNotFoundError:
        raise StandinError(f"{argv[0]} is not installed")
    if check and p.returncode != 0:
        raise StandinError(f"{' '.join(argv[:3])} failed: {p.stderr.decode(errors='replace').strip()}")
    return p


def openssl(*args, input=None):
    return run(["openssl", *args], input=input).stdout


def new_key(path, algorithm="RSA-2048"):
    """Private key in PEM at path, following ClusterConfiguration.encryptionAlgorithm."""
    if algorithm.startswith("RSA-"):
        opts = ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{algorithm[4:]}"]
    elif algorithm in ("ECDSA-P256", "ECDSA-P384"):
        opts = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:P-{algorithm[-3:]}"]
    else:
        raise StandinError(f"unsupported encryptionAlgorithm {algorithm}")
    pem = openssl("genpkey", *opts)
    write_file(path, pem, 0o600)
    return pem


def new_ca(cert_path, key_path, cn, algorithm="RSA-2048", days=3650):
    new_key(key_path, algorithm)
    pem = openssl("req", "-x509", "-new", "-key", root_path(key_path), "-days", str(days),
                  "-subj", f"/CN={cn}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign")
    write_file(cert_path, pem)


def sign_csr(csr_pem, ca_cert_path, ca_key_path, days=365, sans=(), client=False, server=False):
    """Sign a CSR with a CA on disk; SANs are IPs or DNS names."""
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    usages = (["serverAuth"] if server else []) + (["clientAuth"] if client else [])
    if usages:
        ext.append("extendedKeyUsage=" + ",".join(usages))
    if sans:
        ext.append("subjectAltName=" + ",".join(("IP:" if is_ip(s) else "DNS:") + s for s in sans))
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "csr"), "wb").write(csr_pem)
        open(os.path.join(d, "ext"), "w").write("[v3]\n" + "\n".join(ext) + "\n")
        return openssl("x509", "-req", "-in", os.path.join(d, "csr"), "-CA", root_path(ca_cert_path),
                       "-CAkey", root_path(ca_key_path), "-set_serial",
                       str(secrets.randbits(63)), "-days", str(days), "-extfile", os.path.join(d, "ext"),
                       "-extensions", "v3")


def new_csr(key_path, subject):
    return openssl("req", "-new", "-key", root_path(key_path), "-subj", subject)


def new_leaf(cert_path, key_path, ca_cert, ca_key, subject, sans=(), client=False, server=False,
             algorithm="RSA-2048"):
    new_key(key_path, algorithm)
    write_file(cert_path, sign_csr(new_csr(key_path, subject), ca_cert, ca_key, sans=sans, client=client,
                                   server=server))


def is_ip(s):
    import ipaddress
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def spki_sha256(cert_pem):
    """kubeadm's CA pin: sha256 of the DER SubjectPublicKeyInfo of the CA certificate."""
    pub = openssl("x509", "-pubkey", "-noout", input=cert_pem)
    der = openssl("pkey", "-pubin", "-outform", "der", input=pub)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def cert_subject(cert_pem):
    return openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", input=cert_pem).decode().strip()


def cert_matches_key(cert_pem, key_pem):
    a = openssl("x509", "-noout", "-pubkey", input=cert_pem)
    b = openssl("pkey", "-pubout", input=key_pem)
    return a.strip() == b.strip()


# ---------------------------------------------------------------- certificate-key encryption

def encrypt_with_key(hex_key, plaintext):
    """AES-256-CBC (openssl enc) then HMAC-SHA256, so a wrong key is detected, never half-decrypted."""
    iv = secrets.token_hex(16)
    ct = openssl("enc", "-aes-256-cbc", "-K", hex_key, "-iv", iv, input=plaintext)
    mac = hmac.new(_mac_key(hex_key), bytes.fromhex(iv) + ct, hashlib.sha256).hexdigest()
    return {"iv": iv, "ciphertext": base64.b64encode(ct).decode(), "mac": mac}


def decrypt_with_key(hex_key, blob):
    ct = base64.b64decode(blob["ciphertext"])
    mac = hmac.new(_mac_key(hex_key), bytes.fromhex(blob["iv"]) + ct, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, blob["mac"]):
        return None
    return openssl("enc", "-d", "-aes-256-cbc", "-K", hex_key, "-iv", blob["iv"], input=ct)


def _mac_key(hex_key):
    return hashlib.sha256(b"kubeha-standin-mac:" + bytes.fromhex(hex_key)).digest()


# ---------------------------------------------------------------- etcd through etcdctl

class Etcd:
    """etcdctl (API v3) with mutual TLS; every value is JSON stored under /kubeha-standin/."""

    def __init__(self, endpoints, ca, cert, key, timeout=3):
        self.endpoints, self.ca, self.cert, self.key, self.timeout = endpoints, ca, cert, key, timeout

    def _argv(self, endpoints=None):
        return ["etcdctl", "--endpoints=" + ",".join(endpoints or self.endpoints),
                "--cacert=" + root_path(self.ca), "--cert=" + root_path(self.cert),
                "--key=" + root_path(self.key), f"--dial-timeout={self.timeout}s",
                f"--command-timeout={self.timeout}s"]

    def _run(self, args, input=None, endpoints=None):
        env = dict(os.environ, ETCDCTL_API="3")
        for var in ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"):
            env.pop(var, None)  # flags only: an operator's env file must not change what we check
        try:
            return subprocess.run(self._argv(endpoints) + args, input=input, capture_output=True,
                                  timeout=self.timeout * 3 + 2, env=env)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 1, b"", b"etcdctl timed out")

    def endpoint_health(self, endpoint):
        """(healthy, reason) of one endpoint, authenticated with our client certificate."""
        p = self._run(["endpoint", "health"], endpoints=[endpoint])
        out = (p.stdout + p.stderr).decode(errors="replace").strip()
        return p.returncode == 0, out

    def diagnose(self, endpoint):
        """Why an endpoint failed, told apart by a direct TLS connection with our client certificate:
        unreachable, etcd's server certificate not signed by our caFile, or our client certificate refused."""
        u = urllib.parse.urlparse(endpoint)
        try:
            ctx = ssl.create_default_context(cafile=root_path(self.ca))
            ctx.load_cert_chain(root_path(self.cert), root_path(self.key))
        except (OSError, ssl.SSLError) as e:
            return f"cannot load the etcd client TLS files: {e}"
        try:
            sock = socket.create_connection((u.hostname, u.port), timeout=self.timeout)
        except OSError as e:
            return f"unreachable: {e}"
        try:
            with ctx.wrap_socket(sock, server_hostname=u.hostname) as tls:
                tls.sendall(f"GET /health HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
                reply = tls.recv(4096).decode(errors="replace")
        except ssl.SSLCertVerificationError as e:
            return f"TLS: etcd's server certificate is not trusted by caFile {self.ca}: {e.verify_message}"
        except (ssl.SSLError, OSError) as e:
            return (f"TLS: etcd refused the client certificate {self.cert} (not signed by the CA etcd trusts?): "
                    f"{e}")
        if not reply:
            return f"TLS: etcd closed the connection; it refused the client certificate {self.cert}"
        return "member reachable over TLS but not healthy: " + reply.split("\r\n\r\n", 1)[-1][:200]

    def get(self, key):
        p = self._run(["get", ETCD_PREFIX + key, "-w", "json"])
        self._check(p, "get " + key)
        kvs = json.loads(p.stdout).get("kvs") or []
        return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None

    def get_rev(self, key):
        """(value or None, mod_revision or 0), for compare-and-swap updates."""
        p = self._run(["get", ETCD_PREFIX + key, "-w", "json"])
        self._check(p, "get " + key)
        kvs = json.loads(p.stdout).get("kvs") or []
        if not kvs:
            return None, 0
        return json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0]["mod_revision"])

    def put_if(self, key, value, mod_revision):
        """Put only if the key is unchanged since mod_revision (0: only if absent). True if written.
        Several API servers and kubelets write the same Node: without this, a heartbeat that read the
        Node before a `kubectl label` would silently drop the label when it writes."""
        k = json.dumps(ETCD_PREFIX + key)  # etcdctl txn reads Go-quoted strings; JSON quoting is compatible
        cmp = f'create({k}) = "0"' if mod_revision == 0 else f'mod({k}) = "{mod_revision}"'
        script = f"{cmp}\n\nput {k} {json.dumps(json.dumps(value, sort_keys=True))}\n\n\n"
        p = self._run(["txn"], input=script.encode())
        self._check(p, "txn " + key)
        return p.stdout.startswith(b"SUCCESS")

    def update(self, key, change, attempts=20):
        """Read-modify-write with compare-and-swap; change(value) returns the new value (value may be None)."""
        for _ in range(attempts):
            value, rev = self.get_rev(key)
            new = change(value)
            if self.put_if(key, new, rev):
                return new
        raise StandinError(f"etcd update of {key}: still conflicting after {attempts} attempts")

    def list(self, prefix):
        p = self._run(["get", ETCD_PREFIX + prefix, "--prefix", "-w", "json"])
        self._check(p, "get --prefix " + prefix)
        return [json.loads(base64.b64decode(kv["value"])) for kv in json.loads(p.stdout).get("kvs") or []]

    def put(self, key, value):
        # The value goes through stdin: JSON may start with '-' or be long.
        p = self._run(["put", ETCD_PREFIX + key], input=json.dumps(value, sort_keys=True).encode())
        self._check(p, "put " + key)

    def delete(self, key):
        p = self._run(["del", ETCD_PREFIX + key])
        self._check(p, "del " + key)
        return p.stdout.strip() not in (b"0", b"")

    @staticmethod
    def _check(p, what):
        if p.returncode != 0:
            raise StandinError(f"etcd {what}: {p.stderr.decode(errors='replace').strip()}")


# ---------------------------------------------------------------- kubeconfig and HTTPS client

def kubeconfig(server, ca_pem, cert_pem=None, key_pem=None, user="kubernetes-admin", cluster="kubernetes",
               token=None):
    u = {}
    if cert_pem:
        u["client-certificate-data"] = base64.b64encode(cert_pem).decode()
        u["client-key-data"] = base64.b64encode(key_pem).decode()
    if token:
        u["token"] = token
    ctx = f"{user}@{cluster}"
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": u}],
        "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": user}}],
        "current-context": ctx, "preferences": {},
    }


def load_kubeconfig(path):
    """(server, ca_pem, cert_pem, key_pem, token) of the current context of a kubeconfig file."""
    try:
        text = read_file(path).decode()
    except FileNotFoundError:
        raise StandinError(f"kubeconfig {path} does not exist")
    cfg = yaml.safe_load(text) or {}
    try:
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cl = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        us = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    except (KeyError, StopIteration, TypeError) as e:
        raise StandinError(f"kubeconfig {path} is incomplete: {e}")
    dec = lambda k, d: base64.b64decode(d[k]) if k in d else None
    return (cl["server"], dec("certificate-authority-data", cl), dec("client-certificate-data", us),
            dec("client-key-data", us), us.get("token"))


class ApiClient:
    """HTTPS client of the stand-in API server. ca_pem=None means: do not verify (discovery only)."""

    def __init__(self, server, ca_pem=None, cert_pem=None, key_pem=None, token=None, timeout=5):
        self.server = server.rstrip("/")
        self.token, self.timeout = token, timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="kubeha-standin-")
        if ca_pem is None:
            self.ctx = ssl._create_unverified_context()
        else:
            self.ctx = ssl.create_default_context(cadata=ca_pem.decode())
        if cert_pem:
            # ssl wants files for the client identity; they live in a private temp dir (0700).
            c, k = os.path.join(self._tmp.name, "c"), os.path.join(self._tmp.name, "k")
            open(c, "wb").write(cert_pem)
            fd = os.open(k, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, key_pem)
            os.close(fd)
            self.ctx.load_cert_chain(c, k)

    @classmethod
    def from_kubeconfig(cls, path, timeout=5):
        server, ca, cert, key, token = load_kubeconfig(path)
        return cls(server, ca, cert, key, token, timeout)

    def request(self, method, path, body=None):
        """(status, parsed JSON or text). Network failures raise StandinError."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError, ssl.SSLError) as e:
            raise StandinError(f"{method} {self.server}{path}: {getattr(e, 'reason', e)}")
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def must(self, method, path, body=None, ok=(200, 201)):
        status, obj = self.request(method, path, body)
        if status not in ok:
            msg = obj.get("message") if isinstance(obj, dict) else obj
            raise StandinError(f"{method} {path}: HTTP {status}: {msg}")
        return obj


def wait_for(condition, timeout, interval=0.2):
    """Poll condition() until it returns a truthy value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------- services (systemd or tracked processes)

UNITS = ("kube-apiserver-standin.service", "kubelet.service")


def service_mode():
    mode = os.environ.get("KUBEHA_STANDIN_SERVICES", "systemd")
    if mode not in ("systemd", "process"):
        raise StandinError(f"KUBEHA_STANDIN_SERVICES must be systemd or process, not {mode}")
    return mode


def env_file_args(path, var):
    """The word-split value of VAR in a systemd EnvironmentFile, as systemd's $VAR expansion does."""
    if not exists(path):
        return []
    for line in read_file(path).decode().splitlines():
        if line.startswith(var + "="):
            # systemd strips the quotes of the file, then splits an unquoted $VAR at whitespace.
            return " ".join(shlex.split(line[len(var) + 1:])).split()
    return []


def unit_argv(unit):
    """What the unit's ExecStart runs; must match the unit files that install.sh installs."""
    if unit == "kube-apiserver-standin.service":
        return [os.path.join(BIN_DIR, "kube-apiserver")] + env_file_args(
            "/etc/kubernetes/standin/kube-apiserver.env", "KUBE_APISERVER_ARGS")
    if unit == "kubelet.service":
        return [os.path.join(BIN_DIR, "kubelet"), "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml"] + env_file_args(
            "/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS")
    raise ValueError(unit)


def _pid_file(unit):
    return root_path(f"/run/kubeha-standin/{unit}.pid")


def tracked_pid(unit):
    """PID of the running background process of unit, or None (checks it is really our program)."""
    try:
        pid = int(open(_pid_file(unit)).read().strip())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    except (OSError, ValueError):
        return None
    program = os.path.basename(unit_argv(unit)[0]).encode()
    return pid if program in cmdline else None


def start_unit(unit):
    """(Re)start a unit: systemctl in the lab, a tracked background process in tests."""
    if service_mode() == "systemd":
        # Enabled as well: a real kubelet is an enabled service and brings its static pods (the API server)
        # back after a reboot; the stand-ins do the same, so a rebooted lab machine serves again.
        run(["systemctl", "enable", unit], check=False)
        run(["systemctl", "restart", unit])
        return
    stop_unit(unit)
    log_dir = root_path("/var/log/kubeha-standin")
    os.makedirs(log_dir, exist_ok=True)
    os.makedirs(os.path.dirname(_pid_file(unit)), exist_ok=True)
    log = open(os.path.join(log_dir, unit + ".log"), "ab")
    p = subprocess.Popen([sys.executable] + unit_argv(unit), stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    with open(_pid_file(unit), "w") as f:
        f.write(str(p.pid))
    # Popen may return (vfork) before the kernel has set up the new program's cmdline, which tracked_pid
    # checks; wait (bounded) until it shows, so callers never see a started unit as "not running".
    wait_for(lambda: tracked_pid(unit) is not None or p.poll() is not None, 5, 0.01)


def stop_unit(unit):
    if service_mode() == "systemd":
        run(["systemctl", "disable", "--now", unit], check=False)
        return
    pid = tracked_pid(unit)
    if pid:
        kill_and_wait(pid)
    try:
        os.unlink(_pid_file(unit))
    except FileNotFoundError:
        pass


def kill_and_wait(pid, timeout=5):
    """SIGTERM, wait (bounded) for the process to go, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        except ChildProcessError:
            pass
        if wait_for(lambda: not _alive(pid), timeout, 0.05):
            return


def _alive(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
